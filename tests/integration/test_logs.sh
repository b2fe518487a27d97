#!/usr/bin/env bash
# `deployctl logs` shows build and app output; `logs -f` follows new lines.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent
make_app_repo hello \
    build='echo "build-step-one $(cat VERSION)" && mkdir -p public && echo "hello from $(cat VERSION)" > public/index.html && echo ok > public/healthz' \
    run='echo "started-on-$PORT"; exec busybox httpd -f -vv -p 127.0.0.1:$PORT -h public'
APP=hello

assert_exit 0 dctl deploy
expect_serving $APP "hello from 1" "v1 served"
port=$(release_field $APP v1 port)
assert_ne "" "$port" "v1 has a port"

assert_exit 0 dctl logs
assert_contains "$OUT" "build-step-one 1" "logs: shows the build's output"
assert_contains "$OUT" "started-on-$port" "logs: shows the app's startup line"
assert_exit 0 dctl logs v1
assert_contains "$OUT" "build-step-one 1" "logs v1: shows the build's output"
assert_contains "$OUT" "started-on-$port" "logs v1: shows the app's output"

assert_exit 0 dctl --json logs
all_json() { jq -e -c . "$1" >/dev/null 2>&1; }
assert_true "logs --json prints only JSON lines" all_json "$OUT_FILE"
assert_eq build "$(jq -r --arg port "$port" 'select(.line == "build-step-one 1") | .stream' "$OUT_FILE" | head -n1)" \
    "logs --json: the build line has stream build"
assert_eq app "$(jq -r --arg port "$port" 'select(.line == "started-on-\($port)") | .stream' "$OUT_FILE" | head -n1)" \
    "logs --json: the startup line has stream app"
assert_eq v1 "$(jq -r --arg port "$port" 'select(.line == "started-on-\($port)") | .release' "$OUT_FILE" | head -n1)" \
    "logs --json: lines name their release"

# --- --grep and -n: the agent filters, only matching lines travel ----------------
assert_exit 0 dctl logs --grep 'build-step-\w+ \d'
assert_contains "$OUT" "build-step-one 1" "logs --grep: the matching build line"
assert_not_contains "$OUT" "started-on-$port" "logs --grep: not the app's line that does not match"
assert_exit 0 dctl logs --grep '(?i)^STARTED-ON-\d+$'
assert_contains "$OUT" "started-on-$port" "logs --grep '(?i)...': case-insensitive, ^ and $ at the line's ends"
assert_not_contains "$OUT" "build-step-one" "logs --grep '(?i)...': not the build line"
sent=$(acurl -s "$AGENT_URL/v1/apps/$APP/logs?grep=step-one%201" | wc -l)
assert_eq 1 "$sent" "GET .../logs?grep=: the agent sends the matching line only"
assert_exit 0 dctl --json logs -n 3
assert_eq "app app app" "$(jq -r .stream "$OUT_FILE" | xargs)" "logs -n 3: the last 3 lines (the app's)"
assert_exit 0 dctl --json logs --grep 'build|started' -n 1
assert_eq "started-on-$port" "$(jq -r .line "$OUT_FILE")" "logs --grep -n 1: the last matching line"
assert_exit 0 dctl logs --grep 'no-line-has-this'
assert_eq "" "$OUT" "logs --grep that matches nothing prints nothing"
assert_exit 2 dctl logs --grep '(unclosed'
assert_contains "$ERR" "grep: missing closing parenthesis at offset 9 of the pattern" \
    "logs --grep with a bad pattern: the agent says why"

# --- logs -f picks up a line produced after it started -----------------------------
FOLLOW=$TEST_TMP/follow.out
"$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" --no-color logs -f >"$FOLLOW" 2>"$TEST_TMP/follow.err" &
follow_pid=$!
has_startup() { grep -q "started-on-$port" "$FOLLOW"; }
if wait_until 5 has_startup; then pass "logs -f: prints the existing lines first"; else
    fail "logs -f: prints the existing lines first" "got:" "$(excerpt "$FOLLOW")" "stderr:" "$(excerpt "$TEST_TMP/follow.err")"
fi
assert_true "logs -f keeps running" alive "$follow_pid"
marker=marker-$RANDOM$RANDOM
assert_false "test setup: the marker is not in the output yet" grep -q "$marker" "$FOLLOW"
assert_eq 404 "$(fetch_code $APP "/$marker")" "request for /$marker reaches the app (404)"
has_marker() { grep -q "$marker" "$FOLLOW"; }
if wait_until 3 has_marker; then pass "logs -f: the app's new line (url:/$marker) shows within 3 s"; else
    fail "logs -f: the app's new line shows within 3 s" "app log file: $(excerpt "$DATA/apps/$APP/logs/v1.app.log" 5)" \
        "logs -f output:" "$(excerpt "$FOLLOW")"
fi
kill "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true
assert_true "logs -f stops when killed" dead "$follow_pid"

# logs -f --grep: only the new lines that match.
GREPPED=$TEST_TMP/follow-grep.out
"$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" --no-color logs -f --grep "keep-$marker" \
    >"$GREPPED" 2>"$TEST_TMP/follow-grep.err" &
follow_pid=$!
sleep 0.5
assert_eq 404 "$(fetch_code $APP "/skip-$marker")" "a request the grep does not match"
assert_eq 404 "$(fetch_code $APP "/keep-$marker")" "a request the grep matches"
has_wanted() { grep -q "keep-$marker" "$GREPPED"; }
assert_true "logs -f --grep: the matching new line shows" wait_until 3 has_wanted
assert_not_contains "$(cat "$GREPPED")" "skip-$marker" "logs -f --grep: not the new line that does not match"
assert_not_contains "$(cat "$GREPPED")" "started-on-$port" "logs -f --grep: not the earlier lines that do not match"
kill "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true

# The line is in the plain `logs` output as well, and in the app's log file.
assert_exit 0 dctl logs
assert_contains "$OUT" "$marker" "logs: the new line is kept"
assert_contains "$(cat "$DATA/apps/$APP/logs/v1.app.log")" "$marker" "the app log file has the line"

# --- logs -f on a deploy in progress, and a second release's logs ------------------
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dctl deploy
assert_exit 0 dctl logs
assert_contains "$OUT" "build-step-one 2" "logs (default = PRODUCTION = v2): v2's build line"
assert_not_contains "$OUT" "build-step-one 1" "logs (default = PRODUCTION = v2): not v1's build line"
assert_exit 0 dctl logs v1
assert_contains "$OUT" "build-step-one 1" "logs v1 still available after v2"
assert_exit 2 dctl logs v99

# --- --all-releases: every kept release, oldest first, searched together ------------
assert_exit 0 dctl --json logs --all-releases --grep 'step-one \d'
assert_eq "v1 build-step-one 1
v2 build-step-one 2" "$(jq -r '.release + " " + .line' "$OUT_FILE")" \
    "logs --all-releases --grep: each release's match, oldest first, with its release"
assert_exit 0 dctl --json logs --all-releases --grep 'step-one \d' -n 1
assert_eq "v2 build-step-one 2" "$(jq -r '.release + " " + .line' "$OUT_FILE")" \
    "logs --all-releases -n 1: the newest match"
assert_exit 2 dctl logs --all-releases v1
assert_contains "$ERR" "--all-releases shows every kept release's logs" "--all-releases with a RELEASE is refused"
assert_exit 2 dctl logs --all-releases -f
code=$(acurl -s -o /dev/null -w '%{http_code}' "$AGENT_URL/v1/apps/$APP/logs?all=1&follow=1")
assert_eq 400 "$code" "GET .../logs?all=1&follow=1: 400"
