#!/usr/bin/env bash
# [[cron]] jobs (docs/cron.md) on a two-host target deployed with one `deployctl deploy`:
# an every-minute job runs on the first host only, in the PRODUCTION release's environment
# (its $RELEASE, the host's own variables); a deploy across a minute boundary neither runs
# a due minute twice nor skips one (the due minutes the job recorded are consecutive and
# unique); an agent crash during a run leaves no second run going; `cron run` runs a job now and refuses a second run while it runs (exit 5); a
# timeout kills a run; a job longer than its interval is not started twice (the due time
# is skipped and recorded); `cron ls --json` shows the last and next runs; `logs --process
# cron.NAME` shows a job's output. Real minutes: the suite takes 2-3 minutes.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent a
start_agent b
unset DEPLOYCTL_TOKEN # each agent's token is in the credentials file
APP=hello
ALL="\"$A_URL\", \"$B_URL\""
RECORD=$TEST_TMP/cron-record.txt # both agents run on this machine: one file for both
: >"$RECORD"
make_app_repo hello hosts="$ALL"
cat >>"$REPO/deploy.toml" <<TOML

[[cron]]
name = "tick"
schedule = "* * * * *"
command = 'echo "\$MARKER \$RELEASE due=\$DEPLOYCTL_CRON_DUE" >> $RECORD; echo "tick-output \$RELEASE"'

[[cron]]
name = "slow"
schedule = "* * * * *"
command = 'echo "slow-start \$DEPLOYCTL_CRON_DUE"; sleep 601'
timeout = "5m"

[[cron]]
name = "sleepy"
schedule = "0 0 1 1 *"
command = "echo sleepy-start; sleep 602"
timeout = "2s"
TOML
git -C "$REPO" commit -qam "Cron jobs"
dc() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color "$@"; }
dc_on() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color --host "$1" "${@:2}"; }
cron_json() { acurl -s "$1/v1/apps/hello/cron"; }
job_field() { cron_json "$1" | jq -r --arg n "$2" ".jobs[] | select(.name == \$n) | $3"; }
scheduled_lines() { grep -c 'due=2' "$RECORD" || true; }

assert_exit 0 dc_on "$A_URL" env set MARKER=host-a
assert_exit 0 dc_on "$B_URL" env set MARKER=host-b
assert_exit 0 dc deploy
for h in "$A_URL" "$B_URL"; do
    assert_eq v1 "$(acurl -s "$h/v1/apps/hello" | jq -r .production)" "$h has v1 in production"
done

# --- cron ls: the first host runs the jobs, the second does not ---------------------------
assert_exit 0 dc --json cron ls
on_host() { jq -c --arg h "$1" 'select(.host == $h)' <<<"$OUT"; }
assert_jq "$(on_host "$A_URL")" \
    '.event == "cron" and (.jobs | length) == 3 and (.jobs[] | select(.name == "tick") | .next_run != null and .inactive == null and .schedule == "* * * * *" and .timezone == "UTC")' \
    "cron ls --json: host a runs tick, with a next run"
assert_jq "$(on_host "$B_URL")" \
    '.jobs[] | select(.name == "tick") | .next_run == null and (.inactive | test("another host"))' \
    "cron ls --json: host b does not run tick (another host does)"
assert_exit 0 dc cron ls
assert_match "$OUT" "tick +\* \* \* \* \*" "cron ls: a row for tick"

# --- cron run: now, on the first host -------------------------------------------------------
assert_exit 0 dc cron run tick
assert_contains "$OUT$ERR" "cron.tick" "cron run says where the output goes"
assert_true "cron run tick: its line is recorded" wait_until 20 grep -q "^host-a v1 due=$" "$RECORD"
tick_ok() { [[ $(job_field "$A_URL" tick .last_run.outcome) == ok ]]; }
assert_true "cron run tick: last_run ok" wait_until 20 tick_ok
assert_exit 2 dc cron run no-such-job
assert_contains "$ERR" "no cron job named 'no-such-job'" "an unknown job: named"

# --- a timeout kills a run; a second run while one runs is refused --------------------------
assert_exit 0 dc cron run sleepy
assert_exit 5 dc cron run sleepy
assert_contains "$ERR" "is running" "a second run of a running job: refused (409, exit 5)"
sleepy_done() { [[ $(job_field "$A_URL" sleepy .last_run.outcome) == timed_out ]]; }
assert_true "sleepy: killed at its 2s timeout (outcome timed_out)" wait_until 20 sleepy_done
assert_eq "false" "$(job_field "$A_URL" sleepy .running)" "sleepy: no longer running"
assert_eq "" "$(pgrep -xf 'sleep 602' || true)" "sleepy: its process is gone"
assert_exit 0 dc logs --process cron.sleepy
assert_contains "$OUT" "sleepy-start" "logs --process cron.sleepy: the run's output"
assert_contains "$OUT" "timed out after 2s" "logs --process cron.sleepy: the footer says it timed out"

# --- scheduled runs: one host only ----------------------------------------------------------
assert_true "tick runs on schedule within 70 s" wait_until 70 grep -q 'due=2' "$RECORD"

# --- a deploy across a minute boundary ----------------------------------------------------
# v2's build takes 6 s and starts in a minute's last 4 s: the minute turns while v2 builds and
# the due minute runs in v1 (PRODUCTION then), the next ones in v2.
sed -i 's/^command = "echo \\"building/command = "sleep 6 \&\& echo \\"building/' "$REPO/deploy.toml"
grep -q '^command = "sleep 6 && echo' "$REPO/deploy.toml" || fail "v2's build sleeps" "$(cat "$REPO/deploy.toml")"
late_in_minute() { (($(date -u +%-S) >= 56)); }
assert_true "wait for the end of a minute" wait_until 65 late_in_minute
boundary=$(date -u -d "@$(( ($(date -u +%s) / 60 + 1) * 60 ))" +%Y-%m-%dT%H:%M:%SZ)
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dc deploy
assert_true "the minute that turned during the deploy ($boundary) ran, in v1" \
    wait_until 10 grep -q "^host-a v1 due=$boundary" "$RECORD"
assert_true "tick runs in v2 on schedule" wait_until 75 grep -q '^host-a v2 due=2' "$RECORD"
dues=$(grep -o 'due=2.*' "$RECORD")
assert_eq "" "$(sort <<<"$dues" | uniq -d)" "no due minute ran twice"
first=$(head -n1 <<<"$dues" | cut -d= -f2)
last=$(tail -n1 <<<"$dues" | cut -d= -f2)
span=$((($(date -u -d "$last" +%s) - $(date -u -d "$first" +%s)) / 60 + 1))
assert_eq "$span" "$(grep -c . <<<"$dues")" "no due minute skipped from $first to $last"
assert_eq "" "$(grep host-b "$RECORD" || true)" "host b never ran tick"

# --- a job longer than its interval: the next due time is skipped ----------------------------
assert_eq "true" "$(job_field "$A_URL" slow .running)" "slow: still running"
assert_eq 1 "$(pgrep -xf 'sleep 601' | grep -c . || true)" "slow: one run at a time"
slow_log=$A_DATA/apps/hello/logs/cron.slow.log
assert_true "slow: a due time was skipped and logged" wait_until 65 grep -q "skipped at .*the previous run is still running" "$slow_log"
assert_eq 1 "$(grep -c 'Z slow-start' "$slow_log")" "slow: started once (each line of the log after its time stamp)"

# --- an agent crash during a run: the agent kills the run it left when it is back ---------------
DATA=$A_DATA AGENT_PORT=$A_PORT PROXY_PORT=$A_PROXY_PORT AGENT_PID=$A_PID
kill_agent -9
assert_eq 1 "$(pgrep -xf 'sleep 601' | grep -c . || true)" "after the crash: slow's run goes on untracked"
restart_agent a
assert_true "after the restart: slow's orphaned run is killed and logged" \
    wait_until 20 grep -q "interrupted: the agent restarted during the run" "$slow_log"
assert_true "after the restart: at most one run of slow" \
    bash -c '(( $(pgrep -xf "sleep 601" | grep -c . || true) <= 1 ))'

# --- logs --process ------------------------------------------------------------------------
assert_exit 0 dc_on "$A_URL" logs --process cron.tick
assert_contains "$OUT" "tick-output v2" "logs --process cron.tick: the job's output"
assert_contains "$OUT" "--- cron tick: started" "logs --process cron.tick: a header per run"
assert_exit 2 dc_on "$A_URL" logs --process cron.nope
assert_contains "$ERR" "no process 'cron.nope'" "logs --process of an unknown job: not found"
assert_exit 0 dc_on "$A_URL" --json cron ls
assert_jq "$OUT" '.jobs[] | select(.name == "tick") | .last_run.release == "v2" and .last_run.exit == 0 and (.last_run.duration_ms | type) == "number"' \
    "cron ls --json: tick's last run in v2, exit 0"

# --- a stopped app runs no job -------------------------------------------------------------
assert_exit 0 dc stop
assert_eq "" "$(pgrep -xf 'sleep 601' || true)" "a stopped app: a run going on is killed"
assert_jq "$(cron_json "$A_URL")" '.jobs[] | select(.name == "tick") | .next_run == null and (.inactive | test("stopped"))' \
    "a stopped app: its jobs do not run"
assert_exit 5 dc cron run tick
log "done"
