#!/usr/bin/env bash
# [run] memory, cpus and pids and [build] memory on the process engine, through cgroups
# (docs/deploy-toml.md, docs/design.md §2): the app's cgroup holds the limits; an app
# killed for memory on a request is said to be ("exceeded memory limit 64m") and restarted;
# one killed while starting fails its release; a build over its memory fails with the
# same words; the pids limit stops a fork loop of a one-off (deployctl run); an agent
# restart keeps the app in its cgroup; stopping the app and removing a release remove
# their cgroups. Where cgroups are not writable (--cgroup-root naming an empty folder),
# serve says so once and a deployment asking for a limit is refused, nothing created.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v python3 >/dev/null || { log "SKIP: python3 is not installed"; exit 77; }

CG=/sys/fs/cgroup
if [[ ! -w $CG/memory/cgroup.procs && ! -f $CG/cgroup.controllers ]]; then
    log "SKIP: no writable cgroup hierarchy under $CG"
    exit 77
fi

# On any exit: the cgroups of this suite's agents go too (their processes killed first).
remove_groups() {
    local pid d
    for pid in $(cat "$TEST_TMP/agent.pids" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    for d in "$TEST_TMP"/*/data/agent.id; do
        [[ -f $d ]] || continue
        for c in memory cpu pids; do
            [[ -d $CG/$c/deployctl-$(tr -d '[:space:]' <"$d") ]] || continue
            find "$CG/$c/deployctl-$(tr -d '[:space:]' <"$d")" -name cgroup.procs -exec cat {} + 2>/dev/null |
                xargs -r kill -9 2>/dev/null
            sleep 0.2
            find "$CG/$c/deployctl-$(tr -d '[:space:]' <"$d")" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
    done
}
at_exit remove_groups

start_agent
APP=limits-web
# The app: a Python HTTP server; /eat allocates (and touches) 200 MiB; with GREEDY set
# it does so before it listens.
APP_PY='import http.server, os
hold = []
if os.environ.get("GREEDY"):
    hold.append(b"x" * (200 << 20))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/eat":
            hold.append(b"x" * (200 << 20))
        body = ("limits " + open("VERSION").read().strip() + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()'
make_app_repo $APP build='echo built' run='exec python3 app.py' health_timeout=10s keep=10
commit_change "$REPO" "the app" app.py "$APP_PY"
BASE_TOML=$(cat "$REPO/deploy.toml")
# set_toml RUN_LINES [BUILD_LINES] [ENV_LINES]: deploy.toml with those lines in [run],
# [build] and [env], committed with a new VERSION.
VERSION=1
set_toml() {
    VERSION=$((VERSION + 1))
    local toml
    toml=$(printf '%s\n' "$BASE_TOML" | RUN_LINES=$1 BUILD_LINES=${2:-} awk '
        { print }
        /^\[run\]$/ && ENVIRON["RUN_LINES"] != "" { print ENVIRON["RUN_LINES"] }
        /^\[build\]$/ && ENVIRON["BUILD_LINES"] != "" { print ENVIRON["BUILD_LINES"] }')
    [[ -n ${3:-} ]] && toml+=$'\n\n[env]\n'"$3"
    commit_change "$REPO" "limits: $1 ${2:-} ${3:-}" deploy.toml "$toml" VERSION "$VERSION"
}
LIMITS=$'memory = "64M"\ncpus = 0.5\npids = 40'
set_toml "$LIMITS"

# --- the app runs in its cgroup, with the limits ------------------------------------------
assert_exit 0 dctl deploy
expect_serving $APP "limits 2" "v1 serves"
GROUP=deployctl-$(agent_id)
cgdir() { echo "$CG/$1/$GROUP/$APP/$2"; }
W=v1.web.1
assert_eq 67108864 "$(cat "$(cgdir memory $W)/memory.limit_in_bytes" 2>&1)" "memory.limit_in_bytes of $W: 64M"
if [[ -f $(cgdir memory $W)/memory.memsw.limit_in_bytes ]]; then
    assert_eq 67108864 "$(cat "$(cgdir memory $W)/memory.memsw.limit_in_bytes")" "memory.memsw.limit_in_bytes: no swap beyond it"
fi
assert_eq 100000 "$(cat "$(cgdir cpu $W)/cpu.cfs_period_us" 2>&1)" "cpu.cfs_period_us of $W"
assert_eq 50000 "$(cat "$(cgdir cpu $W)/cpu.cfs_quota_us" 2>&1)" "cpu.cfs_quota_us of $W: half a core"
assert_eq 40 "$(cat "$(cgdir pids $W)/pids.max" 2>&1)" "pids.max of $W"
PID1=$(app_pid $APP v1)
assert_ne "" "$PID1" "the app listens on its port"
for c in memory cpu pids; do
    assert_contains "$(cat "$(cgdir $c $W)/cgroup.procs" 2>&1)" "$PID1" "the app (pid $PID1) is in its $c cgroup"
done
assert_not_contains "$(cat "$AGENT_LOG")" "cgroups: no writable" "serve finds every controller"

# --- over its memory on a request: killed, said so, restarted, serving again ---------------
in_log() { grep -c "exceeded memory limit 64m" "$DATA/apps/$APP/logs/v1.ndjson" 2>/dev/null || true; }
logged() { (($(in_log) >= $1)); }
fetch $APP /eat >/dev/null
wait_until 20 logged 1 ||
    fail "the release's log says the app exceeded its memory limit" "$(excerpt "$DATA/apps/$APP/logs/v1.ndjson")"
pass "the release's log says \"app exceeded memory limit 64m\""
assert_contains "$(grep 'exceeded memory' "$DATA/apps/$APP/logs/v1.ndjson")" "app exceeded memory limit 64m; started again" "the supervisor's note"
serving() { [[ $(fetch $APP /) == "limits 2" ]]; }
wait_until 20 serving || fail "the restarted app serves" "$(excerpt "$AGENT_LOG")"
pass "the supervisor restarted it and it serves again"
PID2=$(app_pid $APP v1)
assert_ne "$PID1" "$PID2" "a new process"
assert_contains "$(cat "$(cgdir memory $W)/cgroup.procs" 2>&1)" "$PID2" "the new process is in the cgroup again"
assert_eq 0 "$(awk '$1 == "oom_kill" { print $2 }' "$(cgdir memory $W)/memory.oom_control")" "its cgroup was made again: no OOM kill counted yet"

# --- an agent restart keeps the app in its cgroup ------------------------------------------
mkdir "$(cgdir memory v9.web.1)" # an empty leftover of a release that no longer runs
kill_agent -9
restart_agent
expect_serving $APP "limits 2" "after an agent restart the app serves"
assert_false "the restarted agent removed the empty leftover cgroup" test -d "$(cgdir memory v9.web.1)"
assert_contains "$(cat "$AGENT_LOG")" "removed 1 leftover cgroup" "and said so"
assert_eq "$PID2" "$(app_pid $APP v1)" "the same process (adopted)"
assert_contains "$(cat "$(cgdir memory $W)/cgroup.procs" 2>&1)" "$PID2" "still in its cgroup"
# The restarted agent finds the cgroup by name for the OOM count.
fetch $APP /eat >/dev/null
wait_until 20 logged 2 || fail "the restarted agent says so too" "$(excerpt "$DATA/apps/$APP/logs/v1.ndjson")"
pass "after the restart, an OOM kill is said to be one again"
wait_until 20 serving || fail "and the app serves again" "$(excerpt "$AGENT_LOG")"

# --- a one-off gets the limits: a fork loop stops at pids.max ------------------------------
assert_exit 0 dctl run -- cat /proc/self/cgroup
assert_contains "$OUT" "/$GROUP/$APP/v1.run-" "deployctl run runs in a cgroup of its own"
run dctl run -- sh -c 'i=0; while [ $i -lt 100 ]; do sleep 61.7 & i=$((i + 1)); done; echo started $i'
assert_ne 0 "$RC" "a fork loop of 100 under pids = 40 fails"
assert_not_contains "$OUT" "started 100" "it did not start 100 processes"
none_left() { ! pgrep -f 'sleep 61.7' >/dev/null; }
wait_until 10 none_left || fail "what the one-off left is killed with its cgroup" "$(pgrep -fa 'sleep 61.7')"
pass "the one-off's leftovers were killed with its cgroup"
runs() { ls -d "$CG/memory/$GROUP/$APP"/v1.run-* 2>/dev/null | wc -l; }
# The agent removes a one-off's cgroup once its leftovers are gone, after deployctl has the
# command's exit status: the cgroup may outlive the processes by one of its 20 ms kill rounds.
no_runs() { [ "$(runs)" = 0 ]; }
wait_until 5 no_runs || fail "the one-offs' cgroups are removed" "left: $(ls -d "$CG/memory/$GROUP/$APP"/v1.run-* 2>/dev/null)"
pass "the one-offs' cgroups are removed"

# --- over its memory while starting: the release fails with the reason ---------------------
set_toml "$LIMITS" "" 'GREEDY = "1"'
# Its [release] command runs first, as a one-off with the app's limits.
printf '\n[release]\ncommand = "cat /proc/self/cgroup"\n' >>"$REPO/deploy.toml"
commit_change "$REPO" "a release command"
assert_exit 1 dctl deploy
assert_contains "$(jq -r 'select(.stream == "release") | .line' "$DATA/apps/$APP/logs/v2.ndjson")" \
    "/$GROUP/$APP/v2.release-" "the release command ran in a cgroup of its own"
assert_eq 0 "$(ls -d "$CG/memory/$GROUP/$APP"/v2.release-* 2>/dev/null | wc -l)" "and it was removed when it ended"
assert_contains "$(release_field $APP v2 error)" "app exceeded memory limit 64m while starting" "v2 FAILED: exceeded its memory while starting"
assert_eq FAILED "$(release_state $APP v2)" "v2 is FAILED"
expect_serving $APP "limits 2" "v1 keeps serving"
assert_false "the failed start's cgroup is removed" test -d "$(cgdir memory v2.web.1)"

# --- a build over [build] memory fails with the same words ---------------------------------
set_toml "" 'memory = "64M"'
sed -i 's/^command = "echo built"$/command = "python3 -c '"'"'b = b\\"x\\" * (200 << 20)'"'"'"/' "$REPO/deploy.toml"
commit_change "$REPO" "a greedy build"
assert_contains "$(cat "$REPO/deploy.toml")" "200 << 20" "the greedy build command is in deploy.toml"
assert_exit 1 dctl deploy
assert_contains "$(release_field $APP v3 error)" "build exceeded memory limit 64m" "v3 FAILED: the build exceeded its memory"
assert_false "the build's cgroup is removed" test -d "$(cgdir memory v3.build)"

# --- a restart: the new process gets a second cgroup of the release, the old one's goes -----
OLD=$(app_pid $APP v1)
assert_exit 0 dctl restart
expect_serving $APP "limits 2" "after deployctl restart the app serves"
NEW=$(app_pid $APP v1)
assert_ne "$OLD" "$NEW" "restart: a new process"
assert_contains "$(cat "$(cgdir memory v1.web.2)/cgroup.procs" 2>&1)" "$NEW" "the new process is in v1.web.2"
assert_false "the old process's cgroup v1.web.1 is removed" test -d "$(cgdir memory v1.web.1)"
W=v1.web.2

# --- removing a release removes its cgroups; so does stopping the app -----------------------
mkdir "$(cgdir memory v2.web.9)" # what an agent killed mid-start could leave
assert_exit 0 dctl rm v2
assert_false "removing v2 removed its cgroups" test -d "$(cgdir memory v2.web.9)"
assert_exit 0 dctl stop
for c in memory cpu pids; do
    assert_false "stopping the app removed its $c cgroup" test -d "$(cgdir $c $W)"
done

# --- no writable cgroups: one line from serve, deployments asking for limits refused --------
mkdir -p "$TEST_TMP/no-cgroups"
AGENT_EXTRA_ARGS=(--cgroup-root "$TEST_TMP/no-cgroups")
start_agent nocg
unset AGENT_EXTRA_ARGS
assert_eq 1 "$(grep -c 'cgroups: no writable memory, cpu, pids controller under '"$TEST_TMP/no-cgroups" "$AGENT_LOG")" \
    "serve names what is missing, once"
make_app_repo limits-refused build='echo built' run='exec python3 app.py'
sed -i '/^\[run\]$/a memory = "64M"' "$REPO/deploy.toml"
commit_change "$REPO" "a memory limit" app.py "$APP_PY"
assert_exit 2 dctl deploy
assert_contains "$ERR" "deploy.toml asks for limits the process engine cannot apply on this server" "the refusal says why"
assert_contains "$ERR" "run.memory needs the memory controller" "and names the key"
api GET /v1/apps/limits-refused
assert_eq 404 "$API_STATUS" "nothing was created (no such app)"

log "all $CHECKS checks passed"
