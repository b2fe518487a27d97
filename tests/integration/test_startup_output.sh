#!/usr/bin/env bash
# A release that fails while starting explains itself: the deploy output (human
# and --json) shows the last 20 lines the app wrote, redacted, as "app" log
# events before the failure, and names `deployctl logs ID` for more. Process
# engine; test_container_startup_output.sh does the same on docker.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent
make_app_repo hello
APP=hello
assert_exit 0 dctl deploy
expect_serving $APP "hello from 1" "v1 served"

SECRET_VALUE=s3cr3t-startup-value-42
printf '%s\n' "$SECRET_VALUE" | dctl env set --secret DB_PASSWORD >/dev/null ||
    fail "env set --secret DB_PASSWORD"

# --- an app that exits at once with a message ----------------------------------------------
write_toml "$REPO" hello \
    run="echo \"python3: can't open file 'nope.py': [Errno 2] No such file or directory\" >&2; echo \"password is \$DB_PASSWORD\"; exit 2"
commit_change "$REPO" "exits at start"
assert_exit 1 dctl deploy
all="$OUT$ERR"
assert_contains "$OUT" "   app | python3: can't open file 'nope.py'" "the app's own error reaches the deploy output, as an app line"
assert_contains "$all" "more: deployctl logs v2" "the output names deployctl logs v2 for more"
assert_contains "$all" "exited with status 2" "and the failure itself"
assert_contains "$OUT" "   app | password is [redacted]" "a secret the app printed is shown redacted"
assert_not_contains "$all" "$SECRET_VALUE" "the secret's value never appears"
assert_eq v1 "$(dctl --json status | jq -r .production)" "v1 still PRODUCTION"
# The app's lines come before the failure, in the order written.
app_line=$(grep -n "app | python3: can't open file" <<<"$OUT" | head -n 1 | cut -d: -f1)
failed_line=$(grep -n "FAILED" <<<"$OUT" | head -n 1 | cut -d: -f1)
assert_true "the app's output comes before the FAILED line ($app_line < $failed_line)" \
    test "${app_line:-0}" -gt 0 -a "${app_line:-0}" -lt "${failed_line:-0}"

commit_change "$REPO" "exits at start, again"
run dctl --json deploy
assert_eq 1 "$RC" "--json: exit 1"
assert_jq "$(jq -sc '.' <<<"$OUT")" \
    'map(select(.event == "log" and .stream == "app" and (.line | contains("can'"'"'t open file '"'"'nope.py'"'"'")))) | length == 1' \
    "--json: the app's line is a log event with stream app"
assert_jq "$(jq -sc '.' <<<"$OUT")" \
    '(map(.event == "log" and .stream == "app") | index(true)) < (map(.event == "state" and .state == "FAILED") | index(true))' \
    "--json: the app's lines come before the FAILED state"
assert_jq "$(jq -sc '.' <<<"$OUT")" \
    'map(select(.event == "log" and (.line | contains("more: deployctl logs v3")))) | length == 1' \
    "--json: the logs hint is a log event"
assert_jq "$(jq -sc '.' <<<"$OUT")" \
    'map(select(.event == "log" and .stream == "app" and .line == "password is [redacted]")) | length == 1' \
    "--json: the secret is redacted"

# --- an app that never gets healthy and prints a lot ----------------------------------------
write_toml "$REPO" hello health_timeout=1s \
    run='i=1; while [ $i -le 30 ]; do echo "startup line $i"; i=$((i+1)); done; exec sleep 60'
commit_change "$REPO" "never healthy"
assert_exit 1 dctl deploy
all="$OUT$ERR"
assert_contains "$all" "health check failed" "the health check timed out"
assert_contains "$all" "startup line 30" "the last line is shown"
assert_contains "$all" "startup line 11" "the 20th line from the end is shown"
assert_not_contains "$all" "startup line 10" "nothing older than the last 20 lines"
assert_contains "$all" "last 20 lines of output (of 30)" "the output says it shows the last 20 of 30"
assert_eq 20 "$(grep -c '   app | startup line' <<<"$OUT")" "exactly 20 app lines"
assert_contains "$all" "more: deployctl logs v4" "and names deployctl logs v4"
assert_exit 0 dctl logs v4
assert_contains "$OUT" "startup line 1" "deployctl logs v4 has all of it"

# --- the release that served before is untouched ---------------------------------------------
assert_eq v1 "$(dctl --json status | jq -r .production)" "v1 still PRODUCTION after all that"
