#!/usr/bin/env bash
# deploy-proxy's workers (docs/agent-config.md, proxy_threads): by default one per CPU
# the agent may use, its affinity mask (taskset) lowered by its cgroup's CPU quota (a v1
# cgroup made here with a quota of one CPU); --proxy-threads sets the count. Each new
# count replaces the running proxy on the same socket while wrk runs, no request failing,
# a connection kept alive across a replacement is answered and closed, not reset, the memory
# a load of connections left free is given back, and GET /metrics reports the workers and
# the requests each one answered.
source "$(dirname "$0")/lib.sh"
require_binaries
require_tools "wrk util-linux" wrk taskset

METRICS_PORT=$(free_port)
AGENT_EXTRA_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT")
CGROUP=""
release_cgroup() { # the processes left in the test's cgroup back to the root one, then it goes
    [[ -n $CGROUP && -d $CGROUP ]] || return 0
    local pid
    for pid in $(cat "$CGROUP/cgroup.procs" 2>/dev/null); do
        echo "$pid" >"$(dirname "$CGROUP")/cgroup.procs" 2>/dev/null || true
    done
    rmdir "$CGROUP" 2>/dev/null || true
}
at_exit release_cgroup

workers_of_proxy() { tr '\0' ' ' <"/proc/$(proxy_pid)/cmdline" | sed -n 's/.*--threads \([0-9]*\).*/\1/p'; }
metric() { curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# restart_under_load LABEL: wrk for 5 s while the agent is killed -9 and started again
# with the settings in force (AGENT_WRAPPER, AGENT_EXTRA_ARGS).
restart_under_load() {
    local label=$1 out=$TEST_TMP/wrk.$RANDOM.out
    wrk -t1 -c16 -d5s --timeout 5s -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT/" >"$out" 2>&1 &
    local wrk_pid=$!
    sleep 1
    kill_agent -9
    restart_agent
    expect_wrk_clean "$wrk_pid" "$out" "while the agent restarted ($label)"
}

# --- the affinity mask: one CPU -------------------------------------------------------------
AGENT_WRAPPER=(taskset -c 0)
start_agent
assert_eq 1 "$(workers_of_proxy)" "under taskset -c 0: deploy-proxy runs one worker"
assert_contains "$(cat "$AGENT_LOG")" ", 1 worker)" "the agent's log says so"
make_app_repo hello
APP=hello
assert_exit 0 dctl deploy
expect_serving $APP "hello from 1" "v1 serves"

# --- every CPU by default -------------------------------------------------------------------
AGENT_WRAPPER=()
CPUS=$(nproc)
restart_under_load "one worker to $CPUS"
assert_eq "$CPUS" "$(workers_of_proxy)" "without a mask: one worker per CPU ($CPUS)"
assert_contains "$(cat "$AGENT_LOG")" "with other settings; replacing it" \
    "the proxy of one worker was replaced on the same socket"

# --- --proxy-threads 2: both workers serve ---------------------------------------------------
AGENT_EXTRA_ARGS+=(--proxy-threads 2)
restart_under_load "--proxy-threads 2"
assert_eq 2 "$(workers_of_proxy)" "--proxy-threads 2: two workers"
wrk -t2 -c32 -d2s -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT/" >/dev/null 2>&1
both_counted() { [[ $(metric 'deploy_proxy_worker_requests_total{worker="0"}') -gt 0 &&
    $(metric 'deploy_proxy_worker_requests_total{worker="1"}') -gt 0 ]]; }
assert_true "each worker answered requests (deploy_proxy_worker_requests_total)" wait_until 5 both_counted
assert_eq 2 "$(metric deploy_proxy_workers)" "deploy_proxy_workers is 2"
log "requests per worker: $(metric 'deploy_proxy_worker_requests_total{worker="0"}') and $(metric 'deploy_proxy_worker_requests_total{worker="1"}')"

# --- more workers than CPUs, past 64: every count the agent accepts, deploy-proxy runs ----------
AGENT_EXTRA_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT" --proxy-threads 100)
kill_agent -9
restart_agent
assert_eq 100 "$(workers_of_proxy)" "--proxy-threads 100: the proxy is started with 100 workers"
workers_100() { [[ $(metric deploy_proxy_workers) == 100 ]]; }
assert_true "... runs them (deploy_proxy_workers is 100)" wait_until 10 workers_100
expect_serving $APP "hello from 1" "... and serves"
AGENT_EXTRA_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT" --proxy-threads 2)
kill_agent -9
restart_agent
assert_eq 2 "$(workers_of_proxy)" "back to --proxy-threads 2"
AGENT_EXTRA_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT")

# --- memory given back after a load -------------------------------------------------------------
# 1,000 connections' buffers are freed when they close; within about 5 s deploy-proxy gives the
# heap's free memory back to the system (malloc_trim) and says so. Not on a sanitized build:
# its allocator is not glibc's.
# (ldd's whole output first: `ldd | grep -q` under pipefail fails when grep quits before ldd
# has written everything, and took a sanitized proxy for a default one.)
if [[ $(ldd "$PROXY_BIN" 2>/dev/null) == *libasan* ]]; then
    log "sanitized deploy-proxy: its allocator keeps freed memory; the trim is checked on the default build"
else
    proxy_status() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$(proxy_pid)/status"; } # KiB
    proxy_rss() { proxy_status VmRSS; }
    # Once serving, the pages of its binary and libraries that only start-up used are unmapped:
    # what stays mapped of files is what serving uses.
    RSS_FILE=$(proxy_status RssFile)
    log "deploy-proxy RSS of files (its binary and libraries): $RSS_FILE KiB"
    assert_true "deploy-proxy keeps at most 5 MiB of file pages mapped ($RSS_FILE KiB; 6.5 MiB when nothing is unmapped)" \
        test "$RSS_FILE" -le 5120
    trims() { grep -c "gave the heap's free memory back" "$DATA/proxy/proxy.log" || true; }
    RSS_BEFORE=$(proxy_rss) TRIMS=$(trims)
    (ulimit -n 4096 && wrk -t1 -c1000 -d3s -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT/") >/dev/null 2>&1
    RSS_LOADED=$(proxy_rss)
    log "deploy-proxy RSS: $RSS_BEFORE KiB before 1,000 connections, $RSS_LOADED KiB once they closed"
    trimmed() { (($(trims) > TRIMS)); }
    assert_true "within 12 s deploy-proxy gives the freed memory back" wait_until 12 trimmed
    RSS_TRIMMED=$(proxy_rss)
    log "$(grep "gave the heap's free memory back" "$DATA/proxy/proxy.log" | tail -1)"
    assert_true "... and its RSS is at least 1 MiB lower ($RSS_LOADED -> $RSS_TRIMMED KiB)" \
        test "$RSS_TRIMMED" -le $((RSS_LOADED - 1024))
fi

# --- an idle keep-alive connection across a replacement ------------------------------------
# The replaced proxy answers the next request of each kept-alive connection with
# "Connection: close" for 5 s before it closes the idle ones (a client that does not retry
# must never write into a connection closed under it): the request comes 2 s into its drain.
IDLE_OUT=$TEST_TMP/idle-client.out GO=$TEST_TMP/idle-client.go
python3 - "$PROXY_PORT" "$APP.localhost" "$GO" >"$IDLE_OUT" 2>&1 <<'PY' &
import os, socket, sys, time
port, host, go = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conn = socket.create_connection(("127.0.0.1", port), timeout=20)
def exchange():
    conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return "closed before an answer: " + repr(data[:200])
        data += chunk
    return data.split(b"\r\n\r\n")[0].decode("latin-1").lower()
print("first:", exchange().splitlines()[0], flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
time.sleep(2)
try:
    print("second:", " | ".join(exchange().splitlines()), flush=True)
except OSError as e:
    print("second: failed:", e, flush=True)
PY
IDLE_PID=$!
assert_true "the idle client made its first request" wait_until 10 grep -q "^first: http/1.1 200" "$IDLE_OUT"
DRAINS=$(grep -c "draining connections" "$DATA/proxy/proxy.log" || true)
AGENT_EXTRA_ARGS+=(--proxy-threads 1)
kill_agent -9
restart_agent
draining() { [[ $(grep -c "draining connections" "$DATA/proxy/proxy.log" || true) -gt $DRAINS ]]; }
assert_true "the proxy of 2 workers is replaced by one of 1 worker and drains" wait_until 10 draining
touch "$GO"
wait "$IDLE_PID" || true
IDLE=$(cat "$IDLE_OUT")
assert_contains "$IDLE" "second: http/1.1 200" "a request on a kept-alive connection 2 s into the old proxy's drain is answered"
assert_contains "$IDLE" "connection: close" "... with Connection: close, so the client reconnects"
expect_serving $APP "hello from 1" "served by the new proxy of one worker"
AGENT_EXTRA_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT")

# --- a cgroup with a quota of one CPU (v1 cpu.cfs_quota_us; v2's cpu.max: unit tests) ---------
V1=/sys/fs/cgroup/cpu
if [[ -w $V1/cgroup.procs && -f $V1/cpu.cfs_quota_us ]] && (($(nproc) > 1)); then
    CGROUP=$V1/deployctl-it-$$
    mkdir "$CGROUP"
    echo 100000 >"$CGROUP/cpu.cfs_period_us"
    echo 100000 >"$CGROUP/cpu.cfs_quota_us"
    AGENT_WRAPPER=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CGROUP")
    restart_under_load "in a cgroup of one CPU"
    assert_eq 1 "$(workers_of_proxy)" "in a cgroup whose quota is one CPU: one worker"
    assert_contains "$(cat "$CGROUP/cgroup.procs")" "$AGENT_PID" "the agent ran in that cgroup"
    AGENT_WRAPPER=()
    restart_under_load "out of the cgroup again"
    assert_eq "$CPUS" "$(workers_of_proxy)" "out of it: $CPUS workers again"
else
    log "no writable cgroup v1 cpu hierarchy with two CPUs or more: the cgroup quota case is left to the unit tests"
fi
expect_serving $APP "hello from 1" "still served after every replacement"
pass "deploy-proxy: a worker per usable CPU, --proxy-threads, replaced under load, each worker counted"
