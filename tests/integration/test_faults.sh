#!/usr/bin/env bash
# Failed I/O inside the agent (and, separately, inside deploy-proxy) never costs the serving
# release (docs/reliability.md): with libfiu making a few percent of write, open, fsync,
# rename, unlink and mmap calls fail in one process, many deploys, rollbacks and restarts of
# a small app run, and after every one of them:
#   - the agent and the proxy are alive;
#   - the app answers, through the proxy, with the body of the release state.db calls
#     PRODUCTION (exactly one PRODUCTION);
#   - nothing is left QUEUED, BUILDING or PROVISIONING once the agent is idle;
#   - PRAGMA integrity_check says ok;
#   - a command that failed exited non-zero with a message naming what failed and the
#     system's error text; one that succeeded did what it said.
# Seeded: the seed is printed, FAULT_SEED=N replays the same operations and the same
# injected failures (as far as thread timing allows). FAULT_OPS (per process under test,
# default 24; FAULT_DEPLOYS=N: until N deploys), FAULT_PROBABILITY (default 0.03),
# FAULT_TARGETS ("agent proxy") and FAULT_POINTS (libfiu names) tune it; scripts/faults runs
# it long.
source "$(dirname "$0")/lib.sh"
require_binaries
for tool in fiu-ctrl; do
    command -v "$tool" >/dev/null || {
        log "SKIP: needs $tool (Debian: apt-get install fiu-utils libfiu-dev)"
        exit 77
    }
done
[[ -e /usr/lib/fiu/fiu_posix_preload.so || -n $(find /usr/lib* -name fiu_posix_preload.so -print -quit 2>/dev/null) ]] || {
    log "SKIP: libfiu's POSIX preload library is missing (Debian: apt-get install libfiu0)"
    exit 77
}

SEED=${FAULT_SEED:-$((RANDOM * 32768 + RANDOM))}
OPS=${FAULT_OPS:-24}
PROBABILITY=${FAULT_PROBABILITY:-0.03}
TARGETS=${FAULT_TARGETS:-agent proxy}
POINTS=${FAULT_POINTS:-posix/io/rw/write posix/io/oc/open posix/io/sync/fsync posix/io/dir/rename posix/io/dir/unlink posix/mm/mmap}
# The proxy reads its routing table with a C++ stream, which opens files through fopen.
PROXY_POINTS=${FAULT_PROXY_POINTS:-$POINTS posix/stdio/oc/fopen}
AMOUNT="$OPS operations"
[[ -n ${FAULT_DEPLOYS:-} ]] && AMOUNT="$FAULT_DEPLOYS deploys"
log "seed $SEED (replay: FAULT_SEED=$SEED bash $0); $AMOUNT per target at p=$PROBABILITY on: $POINTS (the proxy also:${PROXY_POINTS#"$POINTS"})"
RANDOM=$SEED
FIFO=$TEST_TMP/fiu
REAL_PROXY_BIN=$PROXY_BIN
START_PROXY=""
COUNTS=${FAULT_COUNTS:-$TEST_TMP/counts}
: >"$COUNTS"
count() { echo "$1" >>"$COUNTS"; }

# Every text the system gives for an error number: a failure message must carry one.
mapfile -t OS_ERRORS < <(python3 -c 'import os; [print(os.strerror(i)) for i in range(1, 134)]' 2>/dev/null ||
    perl -e 'for (1..133) { $! = $_; print "$!\n" }')
names_os_error() {
    local text=$1 e
    for e in "${OS_ERRORS[@]}"; do
        [[ $e == Unknown* ]] && continue
        [[ $text == *"$e"* ]] && return 0
    done
    return 1
}

# faults on|off PID: switch the failure points of one process.
faults() {
    local verb=$1 pid=$2 point args=() points=$POINTS
    [[ $PHASE == proxy ]] && points=$PROXY_POINTS
    for point in $points; do
        if [[ $verb == on ]]; then
            args+=(-c "enable_random name=$point,probability=$PROBABILITY")
        else
            args+=(-c "disable name=$point")
        fi
    done
    fiu-ctrl -f "$FIFO" "${args[@]}" "$pid" >/dev/null 2>&1 ||
        fail "fiu-ctrl switches the failure points $verb in pid $pid" "$(fiu-ctrl -f "$FIFO" "${args[@]}" "$pid" 2>&1)"
}

db() { sqlite3 -cmd '.timeout 5000' "$DATA/state.db" "$@"; }

# The body a release serves: its commit's VERSION (the build writes "hello from VERSION").
body_of_commit() { printf 'hello from %s' "$(git -C "$REPO" show "$1:VERSION" 2>/dev/null)"; }

FAULT_PID="" # the process whose calls fail
PHASE=""

# check_invariants WHAT: the invariants after one operation.
check_invariants() {
    local what=$1 rows production commit expected body code busy integrity
    alive "$AGENT_PID" || fail "$PHASE: the agent is alive after $what" "$(excerpt "$AGENT_LOG")"
    local ppid
    ppid=$(proxy_pid)
    [[ -n $ppid ]] && alive "$ppid" || fail "$PHASE: deploy-proxy is alive after $what" \
        "$(excerpt "$DATA/proxy/proxy.log")"
    [[ $ppid == "$START_PROXY" ]] || fail "$PHASE: deploy-proxy never restarted (a crash) until $what" \
        "pid $START_PROXY, now $ppid" "$(excerpt "$DATA/proxy/proxy.log")"
    # Idle: a deploy whose follower gave up may still run on the agent.
    if ! wait_until 60 idle; then
        fail "$PHASE: nothing QUEUED, BUILDING or PROVISIONING once the agent is idle, after $what" \
            "$(db "select id, state from releases where app='$APP'")"
    fi
    rows=$(db "select count(*) from releases where app='$APP' and state='PRODUCTION'")
    [[ $rows == 1 ]] || fail "$PHASE: exactly one PRODUCTION after $what" "got $rows" \
        "$(db "select id, state, error from releases where app='$APP'")"
    production=$(db "select id from releases where app='$APP' and state='PRODUCTION'")
    commit=$(db "select \"commit\" from releases where app='$APP' and state='PRODUCTION'")
    expected=$(body_of_commit "$commit")
    body=$(fetch $APP /)
    if [[ $body != "$expected" ]]; then
        code=$(fetch_code $APP /)
        fail "$PHASE: the proxy serves PRODUCTION $production after $what" \
            "expected: $expected" "got:      HTTP $code ${body:0:200}" \
            "routes.json: $(tr -d '\n ' <"$DATA/proxy/routes.json" | head -c 600)" \
            "applied: $(cat "$DATA/proxy/applied" 2>/dev/null)" \
            "$(db "select id, state, port, error from releases where app='$APP'")" \
            "proxy log:" "$(excerpt "$DATA/proxy/proxy.log" 15)"
    fi
    integrity=$(db "PRAGMA integrity_check")
    [[ $integrity == ok ]] || fail "$PHASE: PRAGMA integrity_check after $what" "$integrity"
    CHECKS=$((CHECKS + 1))
}
idle() { [[ $(db "select count(*) from releases where state in ('QUEUED','BUILDING','PROVISIONING')") == 0 ]]; }

# A failed command: non-zero, and its message names what failed and the OS error.
check_failure() {
    local what=$1 text="$OUT $ERR"
    count "failed $what: $(grep -m1 -iE 'error|cannot|failed' "$ERR_FILE" | head -c 400)"
    [[ $RC != 0 ]] || fail "$PHASE: $what"
    if ! names_os_error "$text" || [[ $text != *"cannot "* ]]; then
        fail "$PHASE: the failed $what (exit $RC) names the step (\"cannot ...\") and the OS error" \
            "stdout:" "$(excerpt "$OUT_FILE" 15)" "stderr:" "$(excerpt "$ERR_FILE" 15)"
    fi
}

VERSION_N=1
op_deploy() {
    VERSION_N=$((VERSION_N + 1))
    commit_change "$REPO" "version $VERSION_N" VERSION "$VERSION_N"
    run dctl deploy
    count "op deploy"
    if [[ $RC == 0 ]]; then
        assert_contains_quiet "$OUT$ERR" "is live" "deploy of $VERSION_N says it is live"
        [[ $(fetch $APP /) == "hello from $VERSION_N" ]] ||
            fail "$PHASE: a deploy that exited 0 serves its release" "got: $(fetch $APP /)"
    else
        check_failure "deploy of version $VERSION_N"
    fi
    check_invariants "deploy of version $VERSION_N (exit $RC)"
}
op_rollback() {
    local target
    target=$(db "select id from releases where app='$APP' and state='INACTIVE' order by seq desc limit 1")
    [[ -n $target ]] || return 0
    run dctl rollback "$target"
    count "op rollback"
    if [[ $RC == 0 ]]; then
        [[ $(db "select state from releases where app='$APP' and id='$target'") == PRODUCTION ]] ||
            fail "$PHASE: a rollback to $target that exited 0 made it PRODUCTION"
    else
        check_failure "rollback to $target"
    fi
    check_invariants "rollback to $target (exit $RC)"
}
op_restart() {
    run dctl restart
    count "op restart"
    [[ $RC == 0 ]] || check_failure "restart"
    check_invariants "restart (exit $RC)"
}
op_stop_start() {
    run dctl stop
    count "op stop"
    if [[ $RC == 0 ]]; then
        local code
        code=$(fetch_code $APP /)
        [[ $code == 503 ]] || fail "$PHASE: a stopped app answers 503" "got HTTP $code"
    else
        check_failure "stop"
        check_invariants "stop (exit $RC)"
    fi
    # Started again whatever happened: the invariants want the app served.
    local tries
    for tries in 1 2 3 4 5; do
        run dctl start
        count "op start"
        [[ $RC == 0 ]] && break
        check_failure "start"
    done
    [[ $RC == 0 ]] || fail "$PHASE: start succeeds within 5 tries" "$(excerpt "$ERR_FILE")"
    check_invariants "stop then start"
}
assert_contains_quiet() { [[ $1 == *"$2"* ]] || fail "$PHASE: $3" "got: ${1:0:2000}"; }

# The switch's own failures, deterministic: a routing table that cannot be written (every
# fsync fails with ENOSPC), and one the proxy does not acknowledge (it is stopped).
switch_failures() {
    local before
    VERSION_N=$((VERSION_N + 1))
    commit_change "$REPO" "version $VERSION_N" VERSION "$VERSION_N"
    assert_exit 0 dctl deploy
    before=$(db "select id from releases where app='$APP' and state='PRODUCTION'")
    # --force: the same tree, so no blob is uploaded (an upload fsyncs too).
    fiu-ctrl -f "$FIFO" -c "enable name=posix/io/sync/fsync,failinfo=28" "$AGENT_PID"
    assert_exit 1 dctl deploy --force
    fiu-ctrl -f "$FIFO" -c "disable name=posix/io/sync/fsync" "$AGENT_PID"
    assert_contains "$ERR" "cannot write the routing table" "a table that cannot be written fails the deploy, naming the step"
    assert_contains "$ERR" "the disk is full" "... and saying plainly that the disk is full"
    assert_not_contains "$OUT$ERR" "is live" "... and never says the release is live"
    assert_eq "$before" "$(db "select id from releases where app='$APP' and state='PRODUCTION'")" \
        "the release that served stays PRODUCTION"
    assert_eq FAILED "$(db "select state from releases where app='$APP' order by seq desc limit 1")" \
        "the new release is FAILED"
    expect_serving $APP "hello from $VERSION_N" "the release that served keeps serving"
    # (Both releases answer the same page: the routing table says which one serves.)
    assert_eq "$before" "$(jq -r --arg app "$APP" '.routes[] | select(.app == $app) | .release' "$DATA/proxy/routes.json")" \
        "... the routing table deploy-proxy reads still routes to it"
    check_invariants "a deploy whose routing table could not be written"

    VERSION_N=$((VERSION_N + 1))
    commit_change "$REPO" "version $VERSION_N" VERSION "$VERSION_N"
    kill -STOP "$(proxy_pid)"
    run dctl deploy
    kill -CONT "$(proxy_pid)"
    assert_eq 1 "$RC" "a deploy whose table deploy-proxy does not acknowledge exits 1"
    assert_contains "$ERR" "deploy-proxy did not acknowledge routing generation" "... and says so"
    assert_eq "$before" "$(db "select id from releases where app='$APP' and state='PRODUCTION'")" \
        "the release that served stays PRODUCTION"
    wait_until 10 serving_production ||
        fail "the proxy serves PRODUCTION $before again once it runs" "got: $(fetch $APP /)"
    pass "the proxy serves PRODUCTION $before again once it runs"
    check_invariants "a deploy deploy-proxy did not acknowledge"

    # A stop whose table is not acknowledged: not stopped, exit 4 as start's and restart's.
    kill -STOP "$(proxy_pid)"
    run dctl stop
    kill -CONT "$(proxy_pid)"
    assert_eq 4 "$RC" "a stop whose table deploy-proxy does not acknowledge exits 4 (a timeout)"
    assert_contains "$ERR" "cannot stop $APP" "... and says the app was not stopped"
    assert_eq 0 "$(db "select count(*) from apps where name='$APP' and stopped=1")" "the app is not recorded stopped"
    wait_until 10 serving_production ||
        fail "the app keeps serving PRODUCTION after the failed stop" "got: $(fetch $APP /)"
    pass "the app keeps serving PRODUCTION after the failed stop"
}
serving_production() {
    [[ $(fetch $APP /) == "$(body_of_commit "$(db "select \"commit\" from releases where app='$APP' and state='PRODUCTION'")")" ]]
}

# OPS operations, or with FAULT_DEPLOYS=N, as many as it takes to make N deploys.
run_ops() {
    local n=$1 i r deploys_at_start
    deploys_at_start=$(grep -c '^op deploy' "$COUNTS" || true)
    for ((i = 1; ; i++)); do
        if [[ -n ${FAULT_DEPLOYS:-} ]]; then
            (($(grep -c '^op deploy' "$COUNTS" || true) - deploys_at_start >= FAULT_DEPLOYS)) && break
        else
            ((i <= n)) || break
        fi
        r=$((RANDOM % 100))
        if ((r < 55)); then op_deploy
        elif ((r < 75)); then op_rollback
        elif ((r < 92)); then op_restart
        else op_stop_start
        fi
    done
}

# --- the agent under fiu ----------------------------------------------------------
# fiu_command BINARY: sets FIU_COMMAND (an array) to what runs BINARY under libfiu, as
# `fiu-run -x -f $FIFO` does:
# libfiu's preload libraries and its control FIFO. A sanitizer build needs its runtime first
# among the preloaded libraries (fiu-run would put libfiu's first and the process crashes at
# start), so the libraries are preloaded here, the runtime first when the binary has one.
FIU_LIBS=$(dirname "$(find /usr/lib* -name fiu_posix_preload.so -print -quit 2>/dev/null)")
fiu_command() {
    local preload="$FIU_LIBS/fiu_run_preload.so $FIU_LIBS/fiu_posix_preload.so" runtime
    runtime=$(ldd "$1" 2>/dev/null | awk '/libasan/ { print $3 }')
    [[ -z $runtime ]] || preload="$runtime $preload"
    FIU_COMMAND=(env FIU_ENABLE= "FIU_CTRL_FIFO=$FIFO" "LD_PRELOAD=$preload")
}
for target in $TARGETS; do
    PHASE=$target
    log "--- faults in $target"
    # FIU_PRNG_SEED: libfiu's own choice of failing calls follows the seed too.
    export FIU_PRNG_SEED=$((SEED + ${#target}))
    if [[ $target == agent ]]; then
        fiu_command "$AGENT_BIN"
        AGENT_WRAPPER=("${FIU_COMMAND[@]}")
        start_agent "under-$target"
    else
        # The agent starts deploy-proxy with a clean environment: a wrapper in its place
        # runs the real one under libfiu (same pid, same inherited listening sockets).
        AGENT_WRAPPER=()
        mkdir -p "$TEST_TMP/bin"
        fiu_command "$REAL_PROXY_BIN"
        printf '#!/bin/sh\nexport FIU_PRNG_SEED=%s\nexec %s "$@"\n' "$FIU_PRNG_SEED" \
            "$(printf '%q ' "${FIU_COMMAND[@]}" "$REAL_PROXY_BIN")" >"$TEST_TMP/bin/deploy-proxy"
        chmod +x "$TEST_TMP/bin/deploy-proxy"
        PROXY_BIN=$TEST_TMP/bin/deploy-proxy start_agent "under-$target"
    fi
    make_app_repo "app$target" keep=3 drain=100ms
    APP=app$target
    VERSION_N=1
    assert_exit 0 dctl deploy
    expect_serving $APP "hello from 1" "$target: v1 serves before any fault"
    if [[ $target == agent ]]; then
        FAULT_PID=$AGENT_PID
        # The proxy and the apps run without the preload library: the agent's children get a
        # clean environment.
        ppid=$(proxy_pid)
        assert_ne "" "$ppid" "deploy-proxy runs"
        proxy_env=$(tr '\0' '\n' <"/proc/$ppid/environ")
        assert_contains "$proxy_env" "PATH=" "deploy-proxy's environment is readable"
        assert_not_contains "$proxy_env" "LD_PRELOAD=" "deploy-proxy runs without the agent's LD_PRELOAD"
    else
        FAULT_PID=$(proxy_pid)
        wait_until 10 test -p "$FIFO-$FAULT_PID.in" || fail "deploy-proxy runs under libfiu"
        pass "deploy-proxy (pid $FAULT_PID) runs under libfiu"
    fi
    START_PROXY=$(proxy_pid)
    if [[ $target == agent ]]; then
        switch_failures
    fi
    faults on "$FAULT_PID"
    run_ops "$OPS"
    faults off "$FAULT_PID"
    check_invariants "the last operation, faults off"
    pass "$target: $AMOUNT under injected failures kept every invariant"
    kill_agent -9
    kill -9 "$(proxy_pid)" 2>/dev/null || true
done

# What failed where, as far as the logs tell.
for f in "${IT_AGENT_LOGS[@]}" "$TEST_TMP"/*/data/proxy/proxy.log; do
    grep -oE 'cannot (write|open|fsync|create|rename onto|rename|remove|unlink|read|close|mmap)' "$f" 2>/dev/null || true
done | sort | uniq -c | sed 's/^/  /' >"$TEST_TMP/injected"
log "injected failures the agent and the proxy reported, by call (retried ones included):"
cat "$TEST_TMP/injected"
log "operations: $(grep -c '^op ' "$COUNTS") ($(grep '^op ' "$COUNTS" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep = ", "}'))"
log "failed commands (each exited non-zero naming the step and the OS error): $(grep -c '^failed ' "$COUNTS" || true)"
log "invariant breaks: 0"
