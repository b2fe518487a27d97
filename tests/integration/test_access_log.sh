#!/usr/bin/env bash
# Each app's access log (docs/metrics.md, "Access log"): deploy-proxy writes one JSON line per
# request to DATA/apps/APP/logs/access.ndjson, with the instance that answered and the
# X-Request-Id the app got (the client's when acceptable, else a new one);
# `deployctl logs --access [-n N] [-f] [--json]` reads it back; the file is rotated by size
# (agent.toml [proxy] access_log_max_size) and turned off with access_log = false.
source "$(dirname "$0")/lib.sh"
require_binaries
PY=/usr/bin/python3
[[ -x $PY ]] || {
    log "SKIP: needs /usr/bin/python3 (Debian: apt-get install python3)"
    exit 77
}

CONFIG=$TEST_TMP/agent.toml
printf '[proxy]\naccess_log_max_size = "8k"\n' >"$CONFIG"
AGENT_EXTRA_ARGS=(--config "$CONFIG")
start_agent

# The app answers "rid=<the X-Request-Id it got>", reads POST bodies, 404 for /missing,
# 204 without a body for /empty.
make_app_repo traffic build='true' run="exec $PY app.py"
commit_change "$REPO" "an app that shows its request id" app.py '
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/empty":
            self.send_response(204)
            self.end_headers()
            return
        ids = self.headers.get_all("X-Request-Id") or []
        body = ("rid=" + ",".join(ids) + "\n").encode()
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()'
assert_exit 0 dctl deploy
assert_exit 0 dctl scale web=2
LOG=$DATA/apps/traffic/logs/access.ndjson

get() { curl -s --max-time 5 -H "Host: traffic.localhost" "$@"; }
URL=http://127.0.0.1:$PROXY_PORT

# --- X-Request-Id -------------------------------------------------------------------------
assert_eq "rid=client-id-123" "$(get -H "X-Request-Id: client-id-123" "$URL/kept")" \
    "a client's plain X-Request-Id reaches the app as it is"
made=$(get "$URL/made")
assert_match "$made" '^rid=[0-9a-f]{32}$' "without one the app gets a new id of 32 hex digits"
MADE=${made#rid=}
replaced=$(get -H "X-Request-Id: has space" "$URL/replaced")
assert_match "$replaced" '^rid=[0-9a-f]{32}$' "an id with a space is replaced by a new one"
twice=$(get -H "X-Request-Id: one" -H "X-Request-Id: two" "$URL/twice")
assert_match "$twice" '^rid=[0-9a-f]{32}$' "two ids from a client become one new id"
assert_ne "$MADE" "${replaced#rid=}" "every new id differs"

# --- the lines ----------------------------------------------------------------------------
assert_eq 404 "$(get -o /dev/null -w '%{http_code}' -H "X-Request-Id: the-404" "$URL/missing")" "the app answers 404"
assert_eq 204 "$(get -o /dev/null -w '%{http_code}' -H "X-Request-Id: the-204" "$URL/empty")" "the app answers 204, no body"
head -c 1000 /dev/zero >"$TEST_TMP/body"
assert_eq "rid=the-post" "$(get -H "X-Request-Id: the-post" --data-binary @"$TEST_TMP/body" "$URL/form?x=1")" "a POST"
for i in $(seq 1 8); do get "$URL/spread/$i" >/dev/null; done
logged() { grep -q '"request_id":"the-post"' "$LOG" 2>/dev/null; }
assert_true "the lines reach $LOG within a second" wait_until 5 logged

LINES_BEFORE=$(count_lines <"$LOG")
assert_exit 0 dctl logs --access --json
EVENTS=$TEST_TMP/events.ndjson
cp "$OUT_FILE" "$EVENTS"
line_of() { jq -c --arg id "$1" 'select(.event == "access" and .request.request_id == $id) | .request' "$EVENTS"; }
kept=$(line_of client-id-123)
assert_jq "$kept" '.method == "GET" and .path == "/kept" and .host == "traffic.localhost" and .status == 200' \
    "logs --access --json: method, path, host and status of a request"
assert_jq "$kept" '.release == "v1" and (.instance | test("^web\\.[12]$")) and (.upstream | test("^127\\.0\\.0\\.1:[0-9]+$"))' \
    "... the release, the web instance and its address"
assert_jq "$kept" '.client == "127.0.0.1" and .bytes_out > 0 and .duration_ms >= 0 and (.time | test("^20[0-9-]{8}T[0-9:]{8}\\.[0-9]{3}Z$"))' \
    "... the client, the bytes sent, the duration and the time"
assert_jq "$(line_of "$MADE")" '.path == "/made"' "the proxy's own id is the one logged"
assert_jq "$(line_of the-404)" '.status == 404' "a 404 is logged as 404"
assert_jq "$(line_of the-204)" '.status == 204 and .bytes_out > 20' "a 204 without a body is logged with its header's bytes"
assert_jq "$(line_of the-post)" '.method == "POST" and .path == "/form?x=1" and .bytes_in == 1000' \
    "a POST with its query and its 1000 body bytes"
instances=$(jq -r 'select(.event == "access") | .request.instance' "$EVENTS" | sort -u | tr '\n' ' ')
assert_eq "web.1 web.2 " "$instances" "both web instances answered, each logged by name"
events=$(jq -c 'select(.event == "access")' "$EVENTS" | count_lines)
[[ $events -ge $LINES_BEFORE && $events -le $(count_lines <"$LOG") ]] &&
    pass "every line of the file is an access event ($events)" ||
    fail "every line of the file is an access event" "events: $events, lines: $LINES_BEFORE before, $(count_lines <"$LOG") after"
jq -e . "$LOG" >/dev/null && pass "every line of $LOG is JSON" || fail "every line of $LOG is JSON" "$(excerpt "$LOG")"

assert_exit 0 dctl logs --access -n 2
assert_eq 2 "$(count_lines <"$OUT_FILE")" "-n 2 prints the last 2 requests"
assert_contains "$(cat "$OUT_FILE")" "traffic.localhost/spread/8 200" "... in human form: host, path and status"
assert_match "$(tail -n 1 "$OUT_FILE")" ' web\.[12] [0-9a-f]{32}$' "... then the instance and the request id"

# --- following ----------------------------------------------------------------------------
"$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" --no-color logs --access -f >"$TEST_TMP/follow.out" 2>&1 &
FOLLOW=$!
started() { [[ $(count_lines <"$TEST_TMP/follow.out") -ge 10 ]]; }
assert_true "logs --access -f starts with the last 10 requests" wait_until 5 started
get -H "X-Request-Id: followed-one" "$URL/new" >/dev/null
seen() { grep -q followed-one "$TEST_TMP/follow.out"; }
assert_true "logs --access -f prints a new request as it comes" wait_until 5 seen
kill "$FOLLOW" 2>/dev/null || true
wait "$FOLLOW" 2>/dev/null || true

# --- rotation -----------------------------------------------------------------------------
for i in $(seq 1 40); do get "$URL/fill/$i" >/dev/null; done
rotated() { [[ -s $LOG.1 ]] && grep -q '"/fill/40"' "$LOG" 2>/dev/null; }
assert_true "past 8k the log is rotated to access.ndjson.1" wait_until 5 rotated
size=$(stat -c %s "$LOG")
size1=$(stat -c %s "$LOG.1")
[[ $size -le 8192 && $size1 -le 8192 ]] && pass "both files stay within 8k ($size and $size1 bytes)" ||
    fail "both files stay within 8k" "access.ndjson: $size bytes, access.ndjson.1: $size1 bytes"
kept_lines=$(($(count_lines <"$LOG.1") + $(count_lines <"$LOG")))
assert_exit 0 dctl logs --access --json
events=$(jq -c 'select(.event == "access")' "$OUT_FILE" | count_lines)
[[ $events -ge $((kept_lines - 1)) ]] && pass "logs --access reads both files ($events lines)" ||
    fail "logs --access reads both files" "events: $events, lines kept: $kept_lines"
assert_eq '"/fill/40"' "$(jq -c 'select(.event == "access") | .request.path' "$OUT_FILE" | tail -n 1)" \
    "... the newest last"

# --- refusals -----------------------------------------------------------------------------
assert_exit 2 dctl logs --access --process web
assert_contains "$(cat "$ERR_FILE")" "--access" "--access with --process is refused"
# Without --access, -n is the release's last lines (build, agent and app output).
assert_exit 0 dctl --json logs
tail -n 5 "$OUT_FILE" >"$TEST_TMP/last5.expected"
assert_exit 0 dctl --json logs -n 5
assert_eq "$(cat "$TEST_TMP/last5.expected")" "$(cat "$OUT_FILE")" "logs -n 5: the release's last 5 log lines"
code=$(acurl -s -o "$TEST_TMP/nosuch" -w '%{http_code}' "$AGENT_URL/v1/apps/nosuch/logs?access=1")
assert_eq 404 "$code" "the access log of an unknown app: 404"
assert_contains "$(cat "$TEST_TMP/nosuch")" "no app named 'nosuch'" "... saying so"
assert_eq 400 "$(acurl -s -o /dev/null -w '%{http_code}' "$AGENT_URL/v1/apps/traffic/logs?access=1&lines=x")" \
    "lines=x: 400"

# --- turned off ---------------------------------------------------------------------------
printf '[proxy]\naccess_log = false\n' >"$CONFIG"
kill_agent -TERM
restart_agent
before=$(count_lines <"$LOG")
answers() { [[ $(get -H "X-Request-Id: after-off" "$URL/off") == "rid=after-off" ]]; }
assert_true "the app still answers through the proxy started again" wait_until 10 answers
sleep 0.6 # past two flushes of a proxy that would still write
assert_not_contains "$(cat "$LOG")" "after-off" "with access_log = false no line is written"
assert_eq "$before" "$(count_lines <"$LOG")" "... and the file is left as it was"
