#!/usr/bin/env bash
# deploy.toml's [release] command (docs/deploy-toml.md): a migration run once per
# deployment, after the build and before the new release starts, on the first host of a
# two-host target only; its output streams as "release" log lines (secrets redacted); a
# failure or a timeout fails the release on the first host and no host switches; a
# rollback does not run it again; an agent restart during it fails the release and ends it.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent a
start_agent b
unset DEPLOYCTL_TOKEN
APP=hello
DB=$TEST_TMP/shared/app.db # the "database" both hosts share, outside every release dir
MARKS=$TEST_TMP/marks      # where the commands leave their pids
mkdir -p "$(dirname "$DB")" "$MARKS"
SECRET='s3cr3t-release-key-4711'

# The app serves the releases the migrations recorded, read when it starts.
APP_RUN='sqlite3 "$DB_PATH" "SELECT group_concat(release, '"' '"') FROM migrations" > public/index.html && exec busybox httpd -f -p 127.0.0.1:$PORT -h public'
MIGRATE='sqlite3 "$DB_PATH" "CREATE TABLE IF NOT EXISTS migrations (release TEXT, key_len INTEGER); INSERT INTO migrations VALUES ('"'"'$RELEASE'"'"', ${#API_KEY});" && echo "migrated to $RELEASE (version $(cat VERSION)) with key $API_KEY"'
make_app_repo hello hosts="\"$A_URL\", \"$B_URL\"" run="$APP_RUN" health_timeout=5s
BASE_TOML=$(cat "$REPO/deploy.toml")

# set_release COMMAND [TIMEOUT]: deploy.toml's [env] and [release], committed.
set_release() {
    {
        printf '%s\n\n[env]\nDB_PATH = %s\nMARKS = %s\n\n[release]\ncommand = %s\n' \
            "$BASE_TOML" "$(toml_string "$DB")" "$(toml_string "$MARKS")" "$(toml_string "$1")"
        [[ -n ${2:-} ]] && printf 'timeout = "%s"\n' "$2"
    } >"$REPO/deploy.toml"
    commit_change "$REPO" "release command: $1"
}
dc() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color "$@"; }
rows() { sqlite3 "$DB" "SELECT count(*) FROM migrations" 2>/dev/null || echo 0; }
prod_on() { acurl -s "$1/v1/apps/hello" | jq -r '.production // empty' 2>/dev/null || true; }
count_on() { acurl -s "$1/v1/apps/hello/releases" | jq -r 'if type == "array" then length else 0 end' 2>/dev/null || echo 0; }
# events DATA ID JQ-FILTER: lines of a release's event log on one agent.
events() { jq -r "$3" "$1/apps/hello/logs/$2.ndjson" 2>/dev/null || true; }
release_error() { acurl -s "$1/v1/apps/hello/releases/$2" | jq -r '.error // empty' 2>/dev/null || true; }
serving_both() {
    expect_serving $APP "$1" "$2: a serves it" "$A_PROXY_PORT"
    expect_serving $APP "$1" "$2: b serves it" "$B_PROXY_PORT"
}

set_secret() { printf '%s\n' "$SECRET" | dc --host "$1" env set --secret API_KEY; }
for h in "$A_URL" "$B_URL"; do
    run set_secret "$h"
    assert_eq 0 "$RC" "env set --secret API_KEY on $h"
done
set_release "$MIGRATE"

# --- the first deploy: the migration runs once, on a, before either host switches ------
assert_exit 0 dc --json deploy
J=$TEST_TMP/deploy1.ndjson
cp "$OUT_FILE" "$J"
assert_eq 1 "$(rows)" "v1: the release command ran exactly once for the two hosts"
serving_both "v1" "v1 (the app reads the migrated database)"
release_lines=$(jq -r 'select(.event == "log" and .stream == "release") | "\(.host) \(.line)"' "$J")
assert_eq "$A_URL migrated to v1 (version 1) with key [redacted]" "$release_lines" \
    "deploy --json: the command's output is a \"release\" log line from a, \$RELEASE set, in the release dir, the secret redacted"
assert_not_contains "$(cat "$J" "$ERR_FILE")" "$SECRET" "deploy --json: the secret's value appears nowhere"
assert_eq "${#SECRET}" "$(sqlite3 "$DB" "SELECT key_len FROM migrations WHERE release = 'v1'")" \
    "the command saw the secret's value (its length is in the row)"
assert_contains "$(jq -r 'select(.event == "log" and .stream == "system") | .line' "$J")" \
    "running release command: sqlite3" "deploy --json: a system line names the command"
assert_contains "$(events "$B_DATA" v1 'select(.stream == "system") | .line')" "release command skipped on this host" \
    "b's log says it skipped the command"
a_live=$(jq -r --arg h "$A_URL" 'select(.event == "state" and .host == $h and .state == "PRODUCTION") | .ts' "$J" | head -n1)
b_first=$(jq -r --arg h "$B_URL" 'select(.event == "state" and .host == $h) | .ts' "$J" | head -n1)
assert_true "b starts ($b_first) once a is PRODUCTION ($a_live)" test "$b_first" \> "$a_live"
assert_jq "$(jq -c 'select(.event == "summary")' "$J")" '.ok and ([.hosts[] | select(.state == "PRODUCTION")] | length == 2)' \
    "deploy --json: the summary has both hosts PRODUCTION"

# --- a second deploy: one more row ----------------------------------------------------------
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dc deploy
assert_eq 2 "$(rows)" "v2: two deploys, two rows"
serving_both "v1 v2" "v2"
assert_contains "$OUT" "release | migrated to v2 (version 2) with key [redacted]" "deploy: the command's output, human form"
assert_not_contains "$OUT$ERR" "$SECRET" "deploy: the secret's value is not printed"

# --- a failing release command: nothing switches --------------------------------------------
before_b=$(count_on "$B_URL")
set_release 'echo "applying 0003"; echo "migration failed: X" >&2; exit 3'
assert_exit 1 dc --json deploy
J=$OUT_FILE
failed_id=$(jq -r --arg h "$A_URL" 'select(.event == "created" and .host == $h) | .release' "$J")
assert_eq v3 "$failed_id" "failing command: a created v3"
assert_eq FAILED "$(acurl -s "$A_URL/v1/apps/hello/releases/v3" | jq -r .state)" "failing command: v3 is FAILED on a"
assert_eq "release command exited with status 3: migration failed: X" "$(release_error "$A_URL" v3)" \
    "failing command: the reason names the status and the last line"
assert_eq "applying 0003|migration failed: X" "$(events "$A_DATA" v3 'select(.stream == "release") | .line' | paste -sd'|')" \
    "failing command: v3's event log has the command's output"
assert_contains "$(jq -r 'select(.event == "state" and .state == "FAILED") | .message' "$J")" \
    "release command exited with status 3" "deploy --json: the FAILED event says why"
assert_jq "$(jq -c 'select(.event == "summary")' "$J")" '.ok == false and .exit_code == 1 and .hosts[1].state == "NOT_STARTED"' \
    "failing command: the summary: not ok, b not started"
assert_eq v2 "$(prod_on "$A_URL")" "failing command: a still has v2 in production"
assert_eq v2 "$(prod_on "$B_URL")" "failing command: b still has v2 in production"
assert_eq "$before_b" "$(count_on "$B_URL")" "failing command: b got no release"
assert_eq 2 "$(rows)" "failing command: no row added"
serving_both "v1 v2" "failing command: v2 still serves"
assert_exit 0 dc --host "$A_URL" logs v3
assert_contains "$OUT" "migration failed: X" "logs v3: the command's output"

# --- a timeout: FAILED, and the command's processes are gone ---------------------------------
set_release 'sleep 29 & echo $! > "$MARKS/bg.pid"; echo $$ > "$MARKS/sh.pid"; echo waiting; wait' 1s
assert_exit 1 dc deploy
assert_contains "$OUT$ERR" "release command timed out after 1s" "timeout: deploy says why"
assert_eq "release command timed out after 1s" "$(release_error "$A_URL" v4)" "timeout: v4's reason"
for f in bg sh; do
    pid=$(cat "$MARKS/$f.pid" 2>/dev/null || true)
    assert_ne "" "$pid" "timeout: the command wrote its $f pid"
    assert_true "timeout: the command's $f process ($pid) is gone" wait_until 5 dead "$pid"
done
assert_eq "v2 v2" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "timeout: both hosts still on v2"

# --- the migration again, then rollback: not run again ---------------------------------------
set_release "$MIGRATE"
commit_change "$REPO" "Version 5" VERSION 5 # (else v2's tree and deploy.toml: nothing to do)
assert_exit 0 dc deploy
assert_eq 3 "$(rows)" "v5: three successful deploys, three rows"
serving_both "v1 v2 v5" "v5"
assert_exit 0 dc rollback
assert_eq 3 "$(rows)" "rollback: the release command did not run"
assert_eq "v2 v2" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "rollback: both hosts on v2"
assert_contains "$OUT" "note: v2 has a release command; a rollback does not run it again" "rollback says it"
assert_exit 0 dc --json rollback v5
assert_eq 3 "$(rows)" "rollback v5: the release command did not run"
assert_eq 2 "$(jq -s '[.[] | select(.event == "done" and .release == "v5" and .release_command_skipped == true)] | length' "$OUT_FILE")" \
    "rollback --json: each host's done event has release_command_skipped"
assert_contains "$(events "$A_DATA" v2 'select(.stream == "system") | .line')" "release command not run again on rollback" \
    "rollback: v2's event log says it"

# --- an agent restart during the command: FAILED, the command ended --------------------------
rm -f "$MARKS"/*.pid
set_release 'echo $$ > "$MARKS/sh.pid"; echo started; exec sleep 30' 2m
assert_exit 0 dc --host "$A_URL" deploy --no-follow
assert_true "restart: the command is running" wait_until 20 test -s "$MARKS/sh.pid"
cmd_pid=$(cat "$MARKS/sh.pid")
AGENT_PID=$A_PID
kill_agent -9
DATA=$A_DATA AGENT_PORT=$A_PORT PROXY_PORT=$A_PROXY_PORT
restart_agent a
assert_true "restart: the command ($cmd_pid) was ended" wait_until 10 dead "$cmd_pid"
restarted_id=$(acurl -s "$A_URL/v1/apps/hello/releases" | jq -r 'max_by(.id | ltrimstr("v") | tonumber) | .id')
assert_eq FAILED "$(acurl -s "$A_URL/v1/apps/hello/releases/$restarted_id" | jq -r .state)" \
    "restart: $restarted_id is FAILED"
assert_contains "$(release_error "$A_URL" "$restarted_id")" "interrupted: the agent restarted during the release command" "restart: the reason"
assert_eq 3 "$(rows)" "restart: no row added"
expect_serving $APP "v1 v2 v5" "restart: a still serves v5" "$A_PROXY_PORT"

pass "release phase: once per deploy, failures and timeouts switch nothing, rollback skips it"
