#!/usr/bin/env bash
# A container release that fails while starting explains itself, as a process
# does (test_startup_output.sh): the last 20 lines the container wrote,
# redacted, in the deploy output (human and --json "app" log events, before
# the failure) and the `deployctl logs ID` command for more.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

AGENT_ENGINE=docker
start_agent
APP=cstart
make_container_repo $APP
assert_exit 0 dctl deploy
expect_serving $APP "$APP site 1" "v1 served"

SECRET_VALUE=c0ntainer-secret-value-17
printf '%s' "$SECRET_VALUE" | dctl env set --secret DB_PASSWORD >/dev/null ||
    fail "env set --secret DB_PASSWORD"

# --- exits at once with a message -------------------------------------------------------------
write_dockerfile "$REPO" \
    cmd="echo \"python3: can't open file '/app/nope.py': [Errno 2] No such file or directory\" >&2; echo \"password is \$DB_PASSWORD\"; exit 2"
commit_change "$REPO" "exits at start"
assert_exit 1 dctl deploy
all="$OUT$ERR"
assert_contains "$OUT" "   app | python3: can't open file '/app/nope.py'" "the container's own error reaches the deploy output, as an app line"
assert_contains "$all" "container exited with status 2" "and the failure"
assert_contains "$all" "more: deployctl logs v2" "the output names deployctl logs v2 for more"
assert_contains "$OUT" "   app | password is [redacted]" "a secret the container printed is shown redacted"
assert_not_contains "$all" "$SECRET_VALUE" "the secret's value never appears"

commit_change "$REPO" "exits at start, again"
run dctl --json deploy
assert_eq 1 "$RC" "--json: exit 1"
events=$(jq -sc '.' <<<"$OUT")
assert_jq "$events" \
    'map(select(.event == "log" and .stream == "app" and (.line | contains("nope.py")))) | length == 1' \
    "--json: the container's line is a log event with stream app"
assert_jq "$events" \
    '(map(.event == "log" and .stream == "app") | index(true)) < (map(.event == "state" and .state == "FAILED") | index(true))' \
    "--json: before the FAILED state"
assert_jq "$events" 'map(select(.event == "log" and (.line | contains("more: deployctl logs v3")))) | length == 1' \
    "--json: the logs hint"

# --- never healthy, 30 lines ------------------------------------------------------------------
write_dockerfile "$REPO" cmd='i=1; while [ $i -le 30 ]; do echo "startup line $i"; i=$((i+1)); done; exec sleep 60'
write_container_toml "$REPO" $APP health_timeout=2s
commit_change "$REPO" "never healthy"
assert_exit 1 dctl deploy
all="$OUT$ERR"
assert_contains "$all" "health check failed" "the health check timed out"
assert_contains "$all" "startup line 30" "the last line is shown"
assert_contains "$all" "startup line 11" "the 20th line from the end is shown"
assert_not_contains "$all" "startup line 10" "nothing older than the last 20 lines"
assert_eq 20 "$(grep -c '   app | startup line' <<<"$OUT")" "exactly 20 app lines"
assert_eq v1 "$(dctl --json status | jq -r .production)" "v1 still PRODUCTION"
