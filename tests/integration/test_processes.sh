#!/usr/bin/env bash
# deploy.toml's [processes] (docs/processes.md): a web process and a worker from one
# release. The worker writes a file the web serves; a deploy starts the new worker once the
# new web is live and sends the old one SIGTERM ([deploy] stop_timeout, then SIGKILL); a
# crashed worker is restarted and counted; deployctl ps lists both; an agent restart adopts
# the running worker; stop/start/restart and rollback take it along; a worker-only app is
# healthy once its processes stayed up for run.health.grace; bad [processes] are refused.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent
APP=procs
MARKS=$TEST_TMP/marks
mkdir -p "$MARKS"
# The worker leaves its pid, writes what the web serves, and says when SIGTERM reached it.
WORKER='echo $$ > "$MARKS/worker.$RELEASE.pid"; echo "worker $PROCESS of $RELEASE started"; trap '"'"'echo "term $RELEASE" >> "$MARKS/terms"; exit 0'"'"' TERM; while :; do echo "$RELEASE $PROCESS" > public/worker.txt; sleep 0.17; done'
make_app_repo $APP run="$DEFAULT_RUN"
PROCS=$REPO
BASE_TOML=$(cat "$REPO/deploy.toml")
# set_processes EXTRA: deploy.toml with [run] command moved to [processes] web, plus EXTRA.
set_processes() {
    printf '%s\n\n[env]\nMARKS = %s\n\n[processes]\n%s\n' \
        "$(sed '/^command = "exec busybox/d' <<<"$BASE_TOML" | sed 's/^drain = .*/drain = "200ms"\nstop_timeout = "3s"/')" \
        "$(toml_string "$MARKS")" "$1" >"$PROCS/deploy.toml"
    commit_change "$PROCS" "processes: $1"
}
set_processes "web = $(toml_string "$DEFAULT_RUN")
worker = $(toml_string "$WORKER")"
dc() { "$DEPLOYCTL_BIN" -C "$PROCS" --host "$AGENT_URL" --no-color "$@"; }
worker_pid() { cat "$MARKS/worker.$1.pid" 2>/dev/null || true; }
ps_json() { dc --json ps 2>/dev/null | jq -c 'select(.event == "processes")' 2>/dev/null || true; }
ps_field() { ps_json | jq -r "[.processes[] | select(.process == \"$1\")][0].$2 // empty" 2>/dev/null || true; }
serves_worker() { [[ $(fetch $APP /worker.txt) == "$1" ]]; }

# --- v1: web and worker run; the web serves what the worker writes -------------------------
assert_exit 0 dc deploy
# The worker starts once web is live, so its line may come after deployctl returned
# (an AddressSanitizer build starts each app's log writer more slowly).
wait_until 10 grep -q "started worker.1 (pid" "$DATA/apps/$APP/logs/v1.ndjson" || true
assert_contains "$(<"$DATA/apps/$APP/logs/v1.ndjson")" "started worker.1 (pid" "deploy: the worker's start is in the deployment's log"
expect_serving $APP "hello from 1" "v1: web serves"
assert_true "v1: the web serves the file the v1 worker writes" wait_until 5 serves_worker "v1 worker.1"
W1=$(worker_pid v1)
assert_true "v1 worker runs (pid $W1)" alive "$W1"
assert_eq "$W1" "$(ps_field worker pid)" "ps --json: the worker's pid"
assert_eq running "$(ps_field worker state)" "ps --json: the worker is running"
assert_eq running "$(ps_field web state)" "ps --json: the web is running"
assert_eq "$(app_pid $APP v1)" "$(ps_field web pid)" "ps --json: the web's pid is the process on its port"
assert_jq "$(ps_json)" '.release == "v1" and (.processes | length == 2) and ([.processes[].rss_bytes] | all(. > 0)) and ([.processes[].uptime_s] | all(type == "number"))' \
    "ps --json: release, two processes, each with memory and uptime"
assert_exit 0 dc ps
assert_match "$OUT" 'worker\.1 +running +[0-9]+' "ps: a line for worker.1"
assert_match "$OUT" 'web\.1 +running +[0-9]+' "ps: a line for web.1"

assert_exit 0 dc logs --process worker
assert_contains "$OUT" "worker worker.1 of v1 started" "logs --process worker: the worker's output"
assert_exit 0 dc logs --process web
assert_not_contains "$OUT" "worker.1 of v1" "logs --process web: the web's log, not the worker's"
assert_exit 2 dc logs --process nosuch
assert_contains "$ERR" "has no process 'nosuch' in its PRODUCTION release v1" "logs --process: an unknown process"

# --- a crash: restarted with backoff and counted ---------------------------------------------
kill -9 "$W1"
crashed_restarted() { [[ $(ps_field worker restarts) == 1 && $(ps_field worker state) == running ]]; }
assert_true "a worker killed -9 is restarted, restarts = 1" wait_until 10 crashed_restarted
W1b=$(ps_field worker pid)
assert_ne "$W1" "$W1b" "the restarted worker is a new process"
assert_contains "$(ps_field worker last_exit)" "signal 9" "ps --json: last_exit says it was killed by signal 9"
assert_contains "$(jq -r 'select(.stream == "system") | .line' "$DATA/apps/$APP/logs/v1.ndjson")" \
    "worker.1 exited with signal 9; restarted" "the release's log says the worker was restarted"

WEB=$(ps_field web pid)
kill -9 "$WEB"
web_restarted() { [[ $(ps_field web restarts) == 1 && $(ps_field web state) == running && $(ps_field web pid) != "$WEB" ]]; }
assert_true "the web killed -9 is restarted, restarts = 1" wait_until 10 web_restarted
assert_eq "exited with signal 9" "$(ps_field web last_exit)" "ps --json: the web's last_exit"
expect_serving $APP "hello from 1" "the restarted web serves"

# --- an agent restart adopts the running worker ---------------------------------------------
kill_agent -9
restart_agent
assert_eq "$W1b" "$(ps_field worker pid)" "after an agent restart: the same worker pid (adopted)"
assert_true "the adopted worker still runs" alive "$W1b"

# --- v2: the new worker starts once the new web is live, the old one gets SIGTERM -------------
commit_change "$PROCS" "Version 2" VERSION 2
assert_exit 0 dc deploy
expect_serving $APP "hello from 2" "v2: web serves"
assert_true "v2: the web serves the v2 worker's file" wait_until 5 serves_worker "v2 worker.1"
W2=$(worker_pid v2)
assert_true "v2 worker runs" alive "$W2"
got_term() { grep -qx "term v1" "$MARKS/terms" 2>/dev/null; }
assert_true "the v1 worker got SIGTERM and said so" wait_until 5 got_term
assert_true "the v1 worker is gone" wait_until 5 dead "$W1b"
live_ts=$(jq -r 'select(.stream == "system" and (.line | startswith("live: "))) | .ts' "$DATA/apps/$APP/logs/v2.ndjson" | head -n1)
start_ts=$(jq -r 'select(.stream == "system" and (.line | startswith("started worker.1"))) | .ts' "$DATA/apps/$APP/logs/v2.ndjson" | head -n1)
assert_true "v2's worker started ($start_ts) after its web was live ($live_ts)" test "$start_ts" \> "$live_ts" -o "$start_ts" == "$live_ts"
assert_eq "" "$(sqlite3 "$DATA/state.db" "SELECT process FROM processes WHERE release = 'v1'")" "state.db: v1 has no process left"

# --- a worker that ignores SIGTERM gets SIGKILL after stop_timeout ----------------------------
STUBBORN='echo $$ > "$MARKS/worker.$RELEASE.pid"; trap "" TERM; while :; do echo "$RELEASE $PROCESS" > public/worker.txt; sleep 0.19; done'
set_processes "web = $(toml_string "$DEFAULT_RUN")
worker = $(toml_string "$STUBBORN")"
assert_exit 0 dc deploy # v3
assert_true "v3: the web serves the v3 worker's file" wait_until 5 serves_worker "v3 worker.1"
W3=$(worker_pid v3)
commit_change "$PROCS" "Version 4" VERSION 4
t0=$(date +%s%N)
assert_exit 0 dc deploy # v4: v3's worker ignores SIGTERM
assert_true "v3's stubborn worker is killed" wait_until 10 dead "$W3"
ms=$((($(date +%s%N) - t0) / 1000000))
assert_true "after stop_timeout (3s): gone ${ms}ms after the deploy began, not sooner than 3s" test "$ms" -ge 3000

# --- rollback brings the worker of the target back ----------------------------------------------
assert_exit 0 dc rollback v2
expect_serving $APP "hello from 2" "rolled back to v2"
assert_true "after the rollback the v2 worker writes again" wait_until 5 serves_worker "v2 worker.1"
assert_eq v2 "$(ps_json | jq -r .release)" "ps: the rolled back release"

# --- stop / start / restart take the worker along ----------------------------------------------
W=$(ps_field worker pid)
assert_exit 0 dc stop
assert_true "stop: the worker is stopped" wait_until 5 dead "$W"
assert_eq stopped "$(ps_field worker state)" "ps while stopped: the worker is stopped"
assert_exit 0 dc start
assert_true "start: the worker runs again" wait_until 5 test -n "$(ps_field worker pid)"
W=$(ps_field worker pid)
assert_true "start: worker alive" alive "$W"
assert_exit 0 dc restart
W_after=$(ps_field worker pid)
assert_ne "$W" "$W_after" "restart: a new worker process"
assert_true "restart: the old worker is gone" dead "$W"

# --- a worker-only app: healthy once its processes stayed up for health.grace ------------------
make_app_repo solo run="$DEFAULT_RUN"
SOLO=$REPO
printf 'app = "solo"\n\n[build]\ncommand = "true"\n\n[run]\nhealth = { grace = "1s" }\n\n[env]\nMARKS = %s\n\n[processes]\nclock = %s\n\n[targets.local]\nhosts = ["%s"]\n' \
    "$(toml_string "$MARKS")" "$(toml_string 'echo $$ > "$MARKS/clock.$RELEASE.pid"; exec sleep 1000.37')" "$AGENT_URL" >"$SOLO/deploy.toml"
commit_change "$SOLO" "worker only"
assert_exit 0 "$DEPLOYCTL_BIN" -C "$SOLO" --no-color deploy
assert_contains "$OUT" "every process stayed up for 1s" "worker-only: healthy after the grace"
assert_true "worker-only: the clock runs" alive "$(cat "$MARKS/clock.v1.pid")"
assert_eq 404 "$(fetch_code solo /)" "worker-only: nothing is routed (404)"
printf 'app = "solo"\n\n[build]\ncommand = "true"\n\n[run]\nhealth = { grace = "2s" }\n\n[processes]\nclock = "exit 3"\n\n[targets.local]\nhosts = ["%s"]\n' "$AGENT_URL" >"$SOLO/deploy.toml"
commit_change "$SOLO" "a worker that exits"
assert_exit 1 "$DEPLOYCTL_BIN" -C "$SOLO" --no-color deploy
assert_contains "$OUT$ERR" "clock.1: app exited with status 3 while starting" "worker-only: a process that exits fails the release"
assert_true "worker-only: v1's clock keeps running" alive "$(cat "$MARKS/clock.v1.pid")"

# --- bad [processes]: refused before anything is created -----------------------------------------
printf 'app = "solo"\n[run]\ncommand = "x"\n[processes]\nweb = "y"\n' >"$SOLO/deploy.toml"
commit_change "$SOLO" "both"
assert_exit 2 "$DEPLOYCTL_BIN" -C "$SOLO" --host "$AGENT_URL" --no-color deploy
assert_contains "$ERR" "processes.web and run.command both give the web process's command" "web given twice: refused"
printf 'app = "solo"\n[processes]\nrelease = "y"\n' >"$SOLO/deploy.toml"
commit_change "$SOLO" "reserved"
assert_exit 2 "$DEPLOYCTL_BIN" -C "$SOLO" --host "$AGENT_URL" --no-color deploy
assert_contains "$ERR" 'process name "release" is reserved' "a reserved name: refused"

# --- destroy stops the worker -------------------------------------------------------------------
W=$(ps_field worker pid)
assert_exit 0 dc destroy $APP --yes
assert_true "destroy: the worker is gone" wait_until 5 dead "$W"

pass "processes: web and worker rotate on deploy, restart on crash, survive an agent restart; worker-only apps"
