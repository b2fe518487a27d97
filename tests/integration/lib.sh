# Helpers for the end-to-end tests: real deploy-agent, deploy-proxy and
# deployctl processes, real git repositories, a real SQLite file.
#
# Source it first thing from a test script:
#     source "$(dirname "$0")/lib.sh"
# Every check prints one line; the first failing check prints what was
# expected and what came, and the script exits 1. The EXIT trap kills every
# process the test started (agents, proxies, apps, builds) and removes the
# temporary folder, whether the test passed or not.

set -euo pipefail

IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$IT_DIR/../.." && pwd)
DEPLOYCTL_BIN=${DEPLOYCTL_BIN:-$REPO_ROOT/build/cli/deployctl}
AGENT_BIN=${AGENT_BIN:-$REPO_ROOT/build/agent/deploy-agent}
# deploy-proxy is built beside deploy-agent (agent/CMakeLists.txt), where the agent looks for it.
PROXY_BIN=${PROXY_BIN:-$REPO_ROOT/build/agent/deploy-proxy}
TEST_NAME=$(basename "$0" .sh)

# Everything a test creates lives here; the cleanup finds leftover processes
# by this path (their working directory or command line).
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/deployctl-it.${TEST_NAME}.XXXXXX")
TEST_TMP=$(cd "$TEST_TMP" && pwd -P)
CHECKS=0
declare -a IT_AGENT_LOGS=()

export NO_COLOR=1
unset DEPLOYCTL_HOST
# Nothing a test does may depend on the user's git config.
export GIT_CONFIG_GLOBAL=$TEST_TMP/gitconfig GIT_CONFIG_NOSYSTEM=1
export HOME=$TEST_TMP/home
mkdir -p "$HOME"

# ---------------------------------------------------------------- reporting

log() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }

pass() {
    CHECKS=$((CHECKS + 1))
    printf '[%s] ok   %s\n' "$TEST_NAME" "$1"
}

fail() {
    printf '[%s] FAIL %s\n' "$TEST_NAME" "$1" >&2
    shift
    local line
    for line in "$@"; do printf '         %s\n' "$line" >&2; done
    exit 1
}

# Shows at most N lines of a file, indented, for failure messages.
excerpt() {
    local file=$1 n=${2:-40}
    if [[ -s $file ]]; then tail -n "$n" "$file" | sed 's/^/  | /'; else echo "  | (empty)"; fi
}

# ---------------------------------------------------------------- assertions

# assert_eq EXPECTED ACTUAL DESCRIPTION
assert_eq() {
    local expected=$1 actual=$2 what=$3
    if [[ $expected == "$actual" ]]; then
        pass "$what"
    else
        fail "$what" "expected: $(printf '%q' "$expected")" "got:      $(printf '%q' "$actual")"
    fi
}

# assert_ne UNEXPECTED ACTUAL DESCRIPTION
assert_ne() {
    local unexpected=$1 actual=$2 what=$3
    if [[ $unexpected != "$actual" ]]; then
        pass "$what"
    else
        fail "$what" "expected anything but: $(printf '%q' "$unexpected")"
    fi
}

# assert_contains HAYSTACK NEEDLE DESCRIPTION
assert_contains() {
    local haystack=$1 needle=$2 what=$3
    if [[ $haystack == *"$needle"* ]]; then
        pass "$what"
    else
        fail "$what" "expected to contain: $(printf '%q' "$needle")" \
            "got: $(printf '%s' "$haystack" | head -c 3000)"
    fi
}

# assert_not_contains HAYSTACK NEEDLE DESCRIPTION
assert_not_contains() {
    local haystack=$1 needle=$2 what=$3
    if [[ $haystack != *"$needle"* ]]; then
        pass "$what"
    else
        fail "$what" "expected NOT to contain: $(printf '%q' "$needle")" \
            "got: $(printf '%s' "$haystack" | head -c 3000)"
    fi
}

# assert_match HAYSTACK ERE DESCRIPTION (grep -E, case-insensitive)
assert_match() {
    local haystack=$1 re=$2 what=$3
    # A here-string, not a pipe: grep -q stops at the first match, and under
    # pipefail the writer's SIGPIPE would turn a match into a failure.
    if grep -Eqi -- "$re" <<<"$haystack"; then
        pass "$what"
    else
        fail "$what" "expected to match /$re/" "got: $(printf '%s' "$haystack" | head -c 3000)"
    fi
}

# assert_true DESCRIPTION CMD... (the command must exit 0)
assert_true() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what" "command failed: $*"; fi
}

# assert_false DESCRIPTION CMD... (the command must exit non-zero)
assert_false() {
    local what=$1
    shift
    if "$@"; then fail "$what" "command succeeded but should not have: $*"; else pass "$what"; fi
}

# assert_jq JSON FILTER DESCRIPTION: jq -e FILTER must be true on JSON.
assert_jq() {
    local json=$1 filter=$2 what=$3
    if jq -e "$filter" >/dev/null 2>&1 <<<"$json"; then
        pass "$what"
    else
        fail "$what" "expected jq filter to hold: $filter" "on: $(printf '%s' "$json" | head -c 3000)"
    fi
}

# assert_exit CODE CMD...
# Runs CMD with stdout/stderr captured in $OUT / $ERR (also in files $OUT_FILE
# / $ERR_FILE) and checks its exit status. Fails with both streams shown.
OUT="" ERR="" RC=0
OUT_FILE="" ERR_FILE=""
run() {
    OUT_FILE=$TEST_TMP/last.out ERR_FILE=$TEST_TMP/last.err
    RC=0
    "$@" >"$OUT_FILE" 2>"$ERR_FILE" || RC=$?
    OUT=$(cat "$OUT_FILE")
    ERR=$(cat "$ERR_FILE")
}

assert_exit() {
    local code=$1
    shift
    run "$@"
    if [[ $RC == "$code" ]]; then
        pass "exit $code: $(short_cmd "$@")"
    else
        fail "exit status of: $(short_cmd "$@")" "expected: $code" "got:      $RC" \
            "stdout:" "$(excerpt "$OUT_FILE" 30)" "stderr:" "$(excerpt "$ERR_FILE" 30)"
    fi
}

short_cmd() {
    local s=${*//$TEST_TMP/\$TMP}
    s=${s//$DEPLOYCTL_BIN/deployctl}
    printf '%s' "${s:0:200}"
}

# wait_until SECONDS CMD...: polls every 0.1 s until CMD succeeds; returns 1 on timeout.
wait_until() {
    local limit_ms=$(($1 * 1000))
    shift
    local start now
    start=$(date +%s%N)
    while :; do
        if "$@"; then return 0; fi
        now=$(date +%s%N)
        if (((now - start) / 1000000 >= limit_ms)); then return 1; fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------- prerequisites

require_binaries() {
    local b
    for b in "$DEPLOYCTL_BIN" "$AGENT_BIN" "$PROXY_BIN"; do
        [[ -x $b ]] || fail "binary present" "expected an executable at $b (build the project first)"
    done
    # Tools a user's machine may lack: skip (CTest SKIP_RETURN_CODE 77), with the reason.
    local tool missing=()
    for tool in git curl jq sqlite3 busybox ss setsid; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        log "SKIP: needs ${missing[*]} on PATH (Debian: apt-get install git curl jq sqlite3 busybox-static iproute2)"
        exit 77
    fi
    busybox httpd --help >/dev/null 2>&1 || grep -qx httpd <<<"$(busybox --list 2>/dev/null)" || {
        log "SKIP: this busybox has no httpd applet (Debian: apt-get install busybox-static)"
        exit 77
    }
}

# require_tools PACKAGES TOOL...: skips the test (77) when a tool is missing, saying which
# Debian packages have it; in CI (which installs them all: scripts/deps) fails instead.
require_tools() {
    local packages=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null && continue
        [[ ${CI:-} == true ]] && fail "$tool present" "CI installs it (scripts/deps: $packages)"
        log "SKIP: needs $tool (Debian: apt-get install $packages)"
        exit 77
    done
}

# ---------------------------------------------------------------- ports

port_in_use() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# free_port: prints a random TCP port in 20000-32000 nobody listens on and no
# test of this run has handed out before. The suites run in parallel (ctest -j)
# and a test may hold a port unbound for a while (a receiver it restarts, an
# agent it starts again on the same port): the ports handed out are kept in a
# file all the tests launched by the same ctest (the same parent) share, under
# flock, so two tests never get the same one.
IT_PORTS=${TMPDIR:-/tmp}/deployctl-it-ports.$PPID
free_port() {
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-60999): no client socket holds it
        port_in_use "$p" && continue
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
        # Called as $(free_port): the list of ports handed out lives in files.
        if (
            flock 9
            grep -qx "$p" "$IT_PORTS" 2>/dev/null && exit 1
            echo "$p" >>"$IT_PORTS"
        ) 9>>"$IT_PORTS.lock"; then
            echo "$p" >>"$TEST_TMP/ports"
            echo "$p"
            return 0
        fi
    done
    fail "free_port" "no free port found"
}

# ---------------------------------------------------------------- agent

# start_agent [NAME]
# Starts deploy-agent with its own data dir, unix socket and random ports, waits
# for /v1/health (≤10 s). Sets AGENT_PID AGENT_PORT AGENT_URL AGENT_SOCKET
# PROXY_PORT DATA AGENT_LOG, and also NAME_PID, NAME_URL, ... when NAME is given.
# Exports DEPLOYCTL_TOKEN: the admin token the agent wrote to DATA/admin.token
# on its first start; also adds it to deployctl's credentials file ($HOME is
# the test's), keyed by AGENT_URL, for tests that talk to several agents.
# With DATA / AGENT_PORT / PROXY_PORT already set and REUSE=1, restarts on them.
start_agent() {
    local name=${1:-agent}
    if [[ ${REUSE:-0} != 1 ]]; then
        DATA=$TEST_TMP/$name/data
        AGENT_PORT=$(free_port)
        PROXY_PORT=$(free_port)
        mkdir -p "$DATA"
    fi
    # An agent given --tls-cert serves its API over HTTPS.
    local scheme=http
    [[ " ${AGENT_EXTRA_ARGS[*]-} " == *" --tls-cert "* ]] && scheme=https
    AGENT_URL=$scheme://127.0.0.1:$AGENT_PORT
    AGENT_SOCKET=$TEST_TMP/$name/agent.sock
    AGENT_LOG=$TEST_TMP/$name/agent.$(date +%s%N).log
    mkdir -p "$(dirname "$AGENT_LOG")"
    IT_AGENT_LOGS+=("$AGENT_LOG")
    # stdout and stderr go to a file: the proxy and the apps inherit them and
    # outlive the agent, and must not hold the test's (CTest's) pipe open.
    # AGENT_ENGINE (default process) and the array AGENT_EXTRA_ARGS (extra
    # `serve` arguments) may be set by the test, for one call or for all.
    # AGENT_WRAPPER (an array) runs before the binary: libfiu's preload libraries in test_faults.sh.
    local engine=${AGENT_ENGINE:-process}
    ${AGENT_WRAPPER[@]+"${AGENT_WRAPPER[@]}"} "$AGENT_BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$AGENT_PORT" \
        --proxy-listen "127.0.0.1:$PROXY_PORT" --engine "$engine" --proxy-bin "$PROXY_BIN" \
        --socket "$AGENT_SOCKET" ${AGENT_EXTRA_ARGS[@]+"${AGENT_EXTRA_ARGS[@]}"} \
        </dev/null >"$AGENT_LOG" 2>&1 &
    AGENT_PID=$!
    disown "$AGENT_PID" # no "Killed" job notices; bash still reaps it
    echo "$AGENT_PID" >>"$TEST_TMP/agent.pids"
    # The cleanup removes the containers and images of every agent started
    # (found by DATA/agent.id) on every container engine used.
    grep -qxF -- "$DATA" "$TEST_TMP/agent.datadirs" 2>/dev/null || echo "$DATA" >>"$TEST_TMP/agent.datadirs"
    case $engine in
    docker | auto) note_engine docker ;;
    podman) note_engine podman ;;
    esac
    local ok=0 i
    for i in $(seq 1 100); do
        # -k: readiness only; the HTTPS tests check the certificate themselves.
        if curl -fsS -k -o /dev/null --max-time 1 "$AGENT_URL/v1/health" 2>/dev/null; then ok=1; break; fi
        kill -0 "$AGENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $ok != 1 ]]; then
        fail "agent '$name' answers /v1/health within 10 s" "agent log ($AGENT_LOG):" "$(excerpt "$AGENT_LOG")"
    fi
    if ! grep -q 'deploy-agent ready' "$AGENT_LOG"; then
        sleep 0.2
        grep -q 'deploy-agent ready' "$AGENT_LOG" ||
            fail "agent prints 'deploy-agent ready' on stderr" "agent log:" "$(excerpt "$AGENT_LOG")"
    fi
    [[ -s $DATA/admin.token ]] ||
        fail "agent '$name' wrote its admin token to DATA/admin.token" "agent log:" "$(excerpt "$AGENT_LOG")"
    DEPLOYCTL_TOKEN=$(<"$DATA/admin.token")
    export DEPLOYCTL_TOKEN
    add_credentials "$AGENT_URL" "$DEPLOYCTL_TOKEN"
    pass "agent '$name' ready on $AGENT_URL (proxy :$PROXY_PORT, engine $engine, data $(short_cmd "$DATA"))"
    local upper=${name^^}
    upper=${upper//-/_}
    printf -v "${upper}_PID" '%s' "$AGENT_PID"
    printf -v "${upper}_URL" '%s' "$AGENT_URL"
    printf -v "${upper}_PORT" '%s' "$AGENT_PORT"
    printf -v "${upper}_PROXY_PORT" '%s' "$PROXY_PORT"
    printf -v "${upper}_DATA" '%s' "$DATA"
    printf -v "${upper}_SOCKET" '%s' "$AGENT_SOCKET"
}

# restart_agent [NAME]: same data dir and ports as the last start_agent.
restart_agent() { REUSE=1 start_agent "$@"; }

# kill_agent [-9|-TERM]: stops the current agent (by its pid only) and reaps it.
kill_agent() {
    local sig=${1:--9} ports port
    # The ports only it listens on (with several agents, AGENT_PORT may be another one's;
    # the proxy's port is held by deploy-proxy too, and stays).
    ports=$(ss -Hltnp 2>/dev/null | grep "pid=$AGENT_PID," | grep -v "pid=[0-9]*,.*pid=" |
        awk '{ sub(/.*:/, "", $4); print $4 }' | sort -u)
    kill "$sig" "$AGENT_PID" 2>/dev/null || true
    wait_until 10 dead "$AGENT_PID" || fail "agent (pid $AGENT_PID) stops on kill $sig" "still running after 10 s"
    # The leader of a killed process shows as a zombie while its other threads
    # still exit; its sockets close with the last one (slow on a sanitized
    # build): a restart on the same port waits for the listener to go.
    for port in $ports; do
        wait_until 10 port_free "$port" || fail "agent (pid $AGENT_PID) releases its port $port on kill $sig" "still listening after 10 s"
    done
}
port_free() { ! port_in_use "$1"; }

proxy_pid() { cat "${1:-$DATA}/proxy/proxy.pid" 2>/dev/null || true; }

# ---------------------------------------------------------------- processes

# The lookups below fork a few processes in all, never one per process: a loop of readlink,
# tr and grep over /proc took seconds on a loaded machine, at the end of every test. They
# run from / and never put what they look for on a command line, so that their own
# processes never match; the test's shell and the subshell that called are left out.

# Pids (one per line) whose working directory is DIR or below it.
pids_in_cwd() {
    find /proc/[0-9]*/cwd -maxdepth 0 -printf '%p %l\n' 2>/dev/null |
        DIR=$1 awk '{ split($1, p, "/"); cwd = substr($0, length($1) + 2) }
            cwd == ENVIRON["DIR"] || index(cwd, ENVIRON["DIR"] "/") == 1 { print p[3] }' | sort -u
}
# Pids (one per line) whose command line contains WORD (read from a file, not an argument).
pids_with_word() {
    grep -alFf <(printf '%s\n' "$1") /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | sort -u
}
# What the pipeline reads (pids, one per line) but the pids given.
without() {
    local args=() pid
    for pid in "$@"; do args+=(-e "$pid"); done
    grep -vxF "${args[@]}" || true
}

# Pids whose working directory or command line lies under PREFIX.
pids_under() (
    local self=$BASHPID caller
    read -r _ _ _ caller _ <"/proc/$self/stat"
    cd / || exit
    sort -un <(pids_in_cwd "$1") <(pids_with_word "$1") | without "$$" "$self" "$caller"
)

# Pids of processes whose cwd is DIR (or below) and whose command line contains WORD.
pids_in_dir_matching() (
    local self=$BASHPID caller
    read -r _ _ _ caller _ <"/proc/$self/stat"
    cd / || exit
    comm -12 <(pids_in_cwd "$1") <(pids_with_word "$2") | without "$$" "$self" "$caller"
)

# The pid listening on 127.0.0.1:PORT (empty if none).
listener_pid() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
}

# A zombie (exited, not yet reaped by its parent) counts as dead.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [[ $state != Z && -n $state ]]
}
dead() { ! alive "$1"; }

# ---------------------------------------------------------------- sshd

# start_sshd NAME HOST_KEY [EXTRA]: an sshd of the test's own on a free 127.0.0.1 port,
# taking the keys in $SSHD_DIR/authorized_keys (the test makes SSHD_DIR and the keys, and
# checks that SSHD_BIN exists), with the sshd_config lines EXTRA (they win); sets SSH_PORT and
# SSHD_PID. stop_sshds ends them all.
declare -a SSHD_PIDS=()
start_sshd() {
    local name=$1 key=$2 extra=${3:-} config=$SSHD_DIR/$1.config
    SSH_PORT=$(free_port)
    # EXTRA first: sshd takes the first value of a keyword.
    cat >"$config" <<EOF
$extra
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $key
AuthorizedKeysFile $SSHD_DIR/authorized_keys
PidFile $SSHD_DIR/$name.pid
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
LogLevel VERBOSE
EOF
    mkdir -p /run/sshd 2>/dev/null || true
    "${SSHD_BIN:-/usr/sbin/sshd}" -D -e -f "$config" </dev/null >"$SSHD_DIR/$name.log" 2>&1 &
    SSHD_PID=$!
    disown "$SSHD_PID" # no "Killed" job notices
    SSHD_PIDS+=("$SSHD_PID")
    wait_until 10 port_in_use "$SSH_PORT" ||
        fail "sshd '$name' listens on 127.0.0.1:$SSH_PORT" "sshd log:" "$(excerpt "$SSHD_DIR/$name.log")"
    pass "sshd '$name' listening on 127.0.0.1:$SSH_PORT"
}

# kill_tree PID: the process and every descendant (sshd's per-connection children).
kill_tree() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
    kill -9 "$1" 2>/dev/null || true
}

# stop_sshds: every sshd start_sshd started, with its children.
stop_sshds() {
    local pid
    for pid in "${SSHD_PIDS[@]-}"; do [[ -n $pid ]] && kill_tree "$pid"; done
    return 0
}

# at_exit FUNCTION: a cleanup of the test's own (its sshds, groups, chroot), run when the
# test ends, before stop_all's, whatever the way out. A test never sets its own EXIT trap:
# one that ran a command before stop_all lost the test's exit code (a failure passed).
IT_AT_EXIT=()
at_exit() { IT_AT_EXIT+=("$1"); }

stop_all() {
    local rc=$?
    trap - EXIT
    set +e
    local cleanup
    for cleanup in "${IT_AT_EXIT[@]-}"; do [[ -n $cleanup ]] && "$cleanup"; done
    if [[ $rc != 0 && $rc != 77 ]]; then
        local f
        for f in "${IT_AGENT_LOGS[@]-}"; do
            [[ -n $f && -f $f ]] || continue
            printf '[%s] --- %s (last lines)\n' "$TEST_NAME" "$(short_cmd "$f")" >&2
            tail -n 40 "$f" | sed 's/^/    /' >&2
        done
    fi
    # Agents first so nothing restarts the apps, then proxies, then anything
    # else (apps, builds) running under the test's folder.
    local pidfile pid round pids
    for pid in $(cat "$TEST_TMP/agent.pids" 2>/dev/null) $(jobs -p); do kill -9 "$pid" 2>/dev/null; done
    for pidfile in "$TEST_TMP"/*/data/proxy/proxy.pid; do
        [[ -f $pidfile ]] && kill -9 "$(cat "$pidfile")" 2>/dev/null
    done
    for round in 1 2 3 4 5; do
        pids=$(pids_under "$TEST_TMP")
        [[ -z $pids ]] && break
        kill -9 $pids 2>/dev/null
        sleep 0.2
    done
    cleanup_containers "$rc"
    wait 2>/dev/null
    # File systems a test mounted under its folder (test_disk.sh's small tmpfs).
    awk -v dir="$TEST_TMP/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mount; do umount -l "$mount"; done
    pids=$(pids_under "$TEST_TMP")
    if [[ -n $pids ]]; then
        printf '[%s] WARNING: processes survived cleanup: %s\n' "$TEST_NAME" "$pids" >&2
    fi
    if [[ ${KEEP_TMP:-0} == 1 ]]; then
        printf '[%s] kept %s\n' "$TEST_NAME" "$TEST_TMP" >&2
    else
        rm -rf "$TEST_TMP"
    fi
    if [[ $rc == 0 ]]; then
        printf '[%s] PASSED (%d checks)\n' "$TEST_NAME" "$CHECKS"
    elif [[ $rc == 77 ]]; then
        printf '[%s] SKIPPED\n' "$TEST_NAME"
    else
        printf '[%s] FAILED after %d passing checks (exit %d)\n' "$TEST_NAME" "$CHECKS" "$rc" >&2
    fi
    exit "$rc"
}
trap stop_all EXIT

# ---------------------------------------------------------------- certificates

# make_test_ca DIR: a test CA (DIR/ca.pem, DIR/ca.key) that issue_cert signs with; sets PKI=DIR.
make_test_ca() {
    PKI=$1
    mkdir -p "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=deployctl test CA" -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null ||
        fail "make the test CA"
}

# issue_cert NAME SAN-LIST [SERIAL]: PKI/NAME.crt and PKI/NAME.key, signed by the test CA,
# for SAN-LIST ("DNS:a.test,DNS:*.a.test", "IP:127.0.0.1"); each file renamed into place.
issue_cert() {
    local name=$1 sans=$2 serial=${3:-$RANDOM}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=${name}" \
        -keyout "$PKI/$name.key.new" -out "$PKI/$name.csr" 2>/dev/null || fail "CSR for $name"
    printf 'subjectAltName=%s\n' "$sans" >"$PKI/$name.ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -days 2 \
        -set_serial "$serial" -extfile "$PKI/$name.ext" -out "$PKI/$name.crt.new" 2>/dev/null ||
        fail "sign $name"
    mv "$PKI/$name.key.new" "$PKI/$name.key"
    mv "$PKI/$name.crt.new" "$PKI/$name.crt"
}

# ---------------------------------------------------------------- apps and repos

# The build writes the page from VERSION and prints a line the log tests find.
DEFAULT_BUILD='echo "building $(cat VERSION)" && mkdir -p public && echo "hello from $(cat VERSION)" > public/index.html && echo ok > public/healthz'
DEFAULT_RUN='exec busybox httpd -f -p 127.0.0.1:$PORT -h public'

# write_toml REPO APP [key=value...]
# keys: build, run, build_timeout, health_path, health_timeout, keep, drain, standby, hosts, domains
# (standby defaults to "0s" here: a suite checks that a replaced release stops after its
# drain unless it asks for [deploy] standby, whose default is 10m)
# (hosts is a TOML array body, e.g. '"http://127.0.0.1:1"'; hosts= with an
# empty value writes no [targets] table; domains likewise, e.g. '"a.test"').
write_toml() {
    local repo=$1 app=$2
    shift 2
    local build=$DEFAULT_BUILD run=$DEFAULT_RUN build_timeout=30s health_path=/healthz
    local health_timeout=10s keep=5 drain=200ms standby=0s hosts="\"${AGENT_URL:-http://127.0.0.1:7070}\"" domains=""
    local kv
    for kv in "$@"; do
        local k=${kv%%=*} v=${kv#*=}
        case $k in
        build) build=$v ;; run) run=$v ;; build_timeout) build_timeout=$v ;;
        health_path) health_path=$v ;; health_timeout) health_timeout=$v ;;
        keep) keep=$v ;; drain) drain=$v ;; standby) standby=$v ;; hosts) hosts=$v ;; domains) domains=$v ;;
        *) fail "write_toml" "unknown key $k" ;;
        esac
    done
    {
        printf 'app = "%s"\n\n' "$app"
        printf '[build]\ncommand = %s\ntimeout = "%s"\n\n' "$(toml_string "$build")" "$build_timeout"
        printf '[run]\ncommand = %s\n' "$(toml_string "$run")"
        printf 'health = { path = "%s", interval = "100ms", timeout = "%s" }\n\n' "$health_path" "$health_timeout"
        printf '[deploy]\nkeep = %s\ndrain = "%s"\nstandby = "%s"\n' "$keep" "$drain" "$standby"
        if [[ -n $hosts ]]; then printf '\n[targets.local]\nhosts = [%s]\n' "$hosts"; fi
        if [[ -n $hosts && -n $domains ]]; then printf 'domains = [%s]\n' "$domains"; fi
    } >"$repo/deploy.toml"
}

# A TOML basic string: backslashes and double quotes escaped.
toml_string() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

# make_app_repo NAME [write_toml keys...]: a fresh git repo with deploy.toml,
# VERSION=1 and a .gitignore, committed. Prints nothing; sets REPO.
make_app_repo() {
    local name=$1
    shift
    REPO=$TEST_TMP/repos/$name
    mkdir -p "$REPO"
    git -C "$REPO" init -q -b main
    git -C "$REPO" config user.name "Integration Test"
    git -C "$REPO" config user.email "it@example.invalid"
    git -C "$REPO" config commit.gpgsign false
    write_toml "$REPO" "$name" "$@"
    echo 1 >"$REPO/VERSION"
    printf 'public/\n*.tmp\n' >"$REPO/.gitignore"
    git -C "$REPO" add -A
    git -C "$REPO" commit -q -m "Initial commit of $name"
}

# commit_change REPO MESSAGE [FILE CONTENT]...: writes files and commits everything.
commit_change() {
    local repo=$1 msg=$2
    shift 2
    while (($# >= 2)); do
        mkdir -p "$(dirname "$repo/$1")"
        printf '%s\n' "$2" >"$repo/$1"
        shift 2
    done
    git -C "$repo" add -A
    git -C "$repo" commit -q --allow-empty -m "$msg"
}

# ---------------------------------------------------------------- talking to it

# The credentials file deployctl reads: an agent's line wins over DEPLOYCTL_TOKEN.
CREDENTIALS=$HOME/.config/deployctl/credentials

# add_credentials URL TOKEN: (re)places URL's line in $CREDENTIALS (mode 0600).
add_credentials() {
    mkdir -p "$(dirname "$CREDENTIALS")"
    touch "$CREDENTIALS"
    chmod 600 "$CREDENTIALS"
    { grep -v "^$1 " "$CREDENTIALS" || true; } >"$CREDENTIALS.new"
    printf '%s %s\n' "$1" "$2" >>"$CREDENTIALS.new"
    chmod 600 "$CREDENTIALS.new"
    mv "$CREDENTIALS.new" "$CREDENTIALS"
}

# token_for URL: the token the tests send to the agent at URL (its base URL or
# any URL under it), as deployctl picks it: the credentials file's line for it,
# else $DEPLOYCTL_TOKEN.
token_for() {
    local base line
    base=$(sed -E 's#^(https?://[^/]+).*#\1#' <<<"$1")
    line=$(awk -v u="$base" '$1 == u { print $2 }' "$CREDENTIALS" 2>/dev/null | tail -n 1)
    if [[ -n $line ]]; then
        printf '%s' "$line"
    else
        printf '%s' "${DEPLOYCTL_TOKEN:-}"
    fi
}

# acurl ARGS... URL: curl to the agent's API with its bearer token (URL last).
# An Authorization header among ARGS replaces the token.
acurl() {
    local url=${*: -1} arg
    for arg in "$@"; do
        [[ ${arg,,} == authorization:* ]] && { curl "$@"; return; }
    done
    curl -H "Authorization: Bearer $(token_for "$url")" "$@"
}

# dctl ARGS...: deployctl against REPO and the current agent.
dctl() { "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" --no-color "$@"; }

# fetch APP [PATH] [PROXY_PORT]: the body served through the proxy (empty on error).
fetch() {
    curl -s --max-time 5 -H "Host: $1.localhost" "http://127.0.0.1:${3:-$PROXY_PORT}${2:-/}" || true
}
# fetch_host HOST [PATH]: the body through the proxy for an exact Host header.
fetch_host() {
    curl -s --max-time 5 -H "Host: $1" "http://127.0.0.1:$PROXY_PORT${2:-/}" || true
}
# fetch_code APP [PATH] [PROXY_PORT]: the HTTP status through the proxy (000 on error).
fetch_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: $1.localhost" \
        "http://127.0.0.1:${3:-$PROXY_PORT}${2:-/}" || true
}

# api GET|POST|... PATH [curl args...]: sets API_STATUS (000 when unreachable)
# and API_BODY; sends the agent's token (acurl; a -H "Authorization: ..." among
# the curl args replaces it). Not for $(...): the variables would be lost in the subshell.
API_STATUS="" API_BODY=""
api() {
    local method=$1 path=$2
    shift 2
    local body=$TEST_TMP/api.body
    : >"$body"
    API_STATUS=$(acurl -s -o "$body" -w '%{http_code}' --max-time 30 -X "$method" "$@" "$AGENT_URL$path") || API_STATUS=000
    API_BODY=$(cat "$body")
}

# release_field APP ID FIELD: from GET /v1/apps/APP/releases/ID.
release_field() {
    acurl -s --max-time 5 "$AGENT_URL/v1/apps/$1/releases/$2" | jq -r ".$3 // empty" 2>/dev/null || true
}

release_state() { release_field "$1" "$2" state; }

# The pid of a release's app process, found by the port the agent gave it.
app_pid() {
    local port
    port=$(release_field "$1" "$2" port)
    [[ -n $port && $port != 0 ]] || return 0
    listener_pid "$port"
}

release_dir() { echo "${3:-$DATA}/apps/$1/releases/$2"; }

# expect_all_ok APP N WHEN: N requests 0.1 s apart through the proxy, every one 200.
expect_all_ok() {
    local app=$1 n=$2 when=$3 ok=0 bad="" i code
    for i in $(seq 1 "$n"); do
        code=$(fetch_code "$app" /)
        if [[ $code == 200 ]]; then ok=$((ok + 1)); else bad+=" #$i:$code"; fi
        sleep 0.1
    done
    assert_eq "$n" "$ok" "$n requests over ~$((n / 10)) s $when: all 200 (failures:${bad:- none})"
}

# expect_wrk_clean WRK_PID OUTPUT_FILE WHILE: waits for a wrk run in the background, then
# asserts it made requests and that not one failed (non-2xx/3xx or a socket error).
expect_wrk_clean() {
    wait "$1" || fail "wrk ran" "$(cat "$2")"
    local out requests
    out=$(cat "$2")
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")
    [[ ${requests:-0} -gt 100 ]] || fail "wrk made requests through the proxy" "$out"
    pass "wrk made $requests requests through the proxy $3"
    assert_not_contains "$out" "Non-2xx or 3xx responses" "... not one answered other than 2xx/3xx"
    assert_not_contains "$out" "Socket errors" "... and no socket error (connect, read, write, timeout)"
}

# expect_serving APP TEXT DESCRIPTION [PROXY_PORT]
expect_serving() {
    local body
    body=$(fetch "$1" / "${4:-$PROXY_PORT}")
    assert_eq "$2" "$body" "$3"
}

# start_and_deploy_hello [DESCRIPTION]: the common start of a suite: an agent
# (start_agent), the app repository `hello` (make_app_repo; sets REPO and
# APP=hello) deployed as v1 and serving "hello from 1". DESCRIPTION names that
# last check (default "v1 served").
start_and_deploy_hello() {
    start_agent
    make_app_repo hello
    APP=hello
    assert_exit 0 dctl deploy
    expect_serving $APP "hello from 1" "${1:-v1 served}"
}

# store_snapshot: every path under DATA/apps and DATA/blobs, sorted; but the
# apps' access logs, which deploy-proxy writes (up to 250 ms late) for every
# request, not for a change to the store, and the spare copy of an app's last
# tree and the copy of its serving build, which the agent writes at idle time
# after a deployment (docs/design.md, docs/build-cache.md): a snapshot taken
# right after a deploy may see them half-written or not yet begun.
store_snapshot() {
    (cd "$DATA" && find apps blobs \( -path 'apps/*/logs/access.ndjson*' -o \
        -path 'apps/*/releases/.tmp-spare' -o -path 'apps/*/releases/.tmp-.tmp-spare' -o \
        -path 'apps/*/build-cache/builds/.ready-*' \) -prune -o -print |
        LC_ALL=C sort)
}
# release_ids [APP]: the app's release ids (default hello) on one line.
release_ids() { acurl -s "$AGENT_URL/v1/apps/${1:-hello}/releases" | jq -r '.[].id' | paste -sd' '; }
# remember_store: notes hello's releases (BASE_RELEASES) and the store's files
# (BASE_FILES) for assert_store_unchanged; call it again after a legitimate change.
remember_store() {
    BASE_FILES=$(store_snapshot)
    BASE_RELEASES=$(release_ids)
}
# assert_store_unchanged WHAT: no new release, nothing added or removed under
# DATA/apps or DATA/blobs since remember_store.
assert_store_unchanged() {
    assert_eq "$BASE_RELEASES" "$(release_ids)" "$1: no new release"
    local now
    now=$(store_snapshot)
    if [[ $now == "$BASE_FILES" ]]; then pass "$1: nothing new under DATA/apps or DATA/blobs"; else
        fail "$1: nothing new under DATA/apps or DATA/blobs" "new or missing:" \
            "$(diff <(echo "$BASE_FILES") <(echo "$now") | grep '^[<>]' | head -20)"
    fi
}

# ---------------------------------------------------------------- container engines
#
# The container tests build images FROM scratch with a static busybox (no
# registry is reachable) and run them with host networking on 127.0.0.1.
# Every Dockerfile they write starts with `LABEL it.deployctl.run=$IT_RUN_ID`,
# so every image and container this test made (intermediate build layers and
# build containers too) carries that label; the agents label theirs with
# dev.deployctl.agent=<agent id>. The EXIT trap removes both kinds.

IT_RUN_ID=$(basename "$TEST_TMP")
ENGINE_CLI=${ENGINE_CLI:-docker}

# ecli ARGS...: the engine CLI the test talks to (docker, or podman with ENGINE_CLI=podman).
ecli() { "$ENGINE_CLI" "$@"; }

# note_engine docker|podman: the cleanup will look for this test's containers there.
note_engine() {
    grep -qx -- "$1" "$TEST_TMP/engines" 2>/dev/null || echo "$1" >>"$TEST_TMP/engines"
}

# require_static_busybox: the images are FROM scratch, so busybox must be static.
# Sets BUSYBOX_BIN.
require_static_busybox() {
    BUSYBOX_BIN=$(command -v busybox 2>/dev/null || true)
    [[ -n $BUSYBOX_BIN ]] && BUSYBOX_BIN=$(readlink -f "$BUSYBOX_BIN")
    if [[ -z $BUSYBOX_BIN ]] || ldd "$BUSYBOX_BIN" 2>&1 | grep -Eqv 'not a dynamic executable|statically linked'; then
        if [[ ${DEPLOYCTL_REQUIRE_DOCKER:-0} == 1 ]]; then
            fail "static busybox present" "CI requires a static busybox for the container images" \
                "found: ${BUSYBOX_BIN:-none} (Debian: apt-get install busybox-static)"
        fi
        log "SKIP: the container images need a static busybox; found ${BUSYBOX_BIN:-none} (Debian: apt-get install busybox-static)"
        exit 77
    fi
}

# require_docker: returns when a Docker engine answers; otherwise fails when
# DEPLOYCTL_REQUIRE_DOCKER=1 (CI), else skips (exit 77).
require_docker() {
    local version err=$TEST_TMP/docker-version.err
    if version=$(timeout 20 docker version --format '{{.Server.Version}}' 2>"$err") && [[ -n $version ]]; then
        DOCKER_SERVER_VERSION=$version
        note_engine docker
        require_static_busybox
        log "docker engine $version"
        return 0
    fi
    if [[ ${DEPLOYCTL_REQUIRE_DOCKER:-0} == 1 ]]; then
        fail "a Docker engine answers \`docker version\`" \
            "CI requires a Docker engine (DEPLOYCTL_REQUIRE_DOCKER=1), but it did not answer:" \
            "$(excerpt "$err" 10)"
    fi
    log "SKIP: no Docker engine answers \`docker version\` ($(head -c 300 "$err" | tr '\n' ' '))"
    exit 77
}

# agent_id [DATA]: the full agent id (DATA/agent.id); agent8 [DATA]: its first 8 hex digits.
agent_id() { tr -d '[:space:]' <"${1:-$DATA}/agent.id" 2>/dev/null || true; }
agent8() {
    local id
    id=$(agent_id "$@")
    id=${id//-/}
    printf '%s' "${id:0:8}"
}

# The names the agent gives a release's image and container (the contract).
image_ref() { printf 'deployctl/%s:%s-%s' "$1" "$2" "$(agent8 "${3:-$DATA}")"; }
container_name() { printf 'deployctl-%s-%s-%s' "$1" "$2" "$(agent8 "${3:-$DATA}")"; }

# app_containers APP [-a]: ids of the app's running (with -a: all) containers of the current agent.
app_containers() {
    local all=()
    [[ ${2:-} == -a ]] && all=(-a)
    ecli ps "${all[@]}" -q --no-trunc --filter "label=dev.deployctl.agent=$(agent_id)" \
        --filter "label=dev.deployctl.app=$1" 2>/dev/null || true
}
# release_containers APP ID [-a]: likewise for one release.
release_containers() {
    local all=()
    [[ ${3:-} == -a ]] && all=(-a)
    ecli ps "${all[@]}" -q --no-trunc --filter "label=dev.deployctl.agent=$(agent_id)" \
        --filter "label=dev.deployctl.app=$1" --filter "label=dev.deployctl.release=$2" 2>/dev/null || true
}
count_lines() { grep -c . || true; }
running_count() { app_containers "$1" | count_lines; }

# app_images APP: repository:tag of every image of the app labelled by the current agent.
# (One --filter only: podman ORs repeated label filters on images.)
app_images() {
    local ref me
    me=$(agent_id)
    ecli images --format '{{.Repository}}:{{.Tag}}' --filter "label=dev.deployctl.app=$1" 2>/dev/null |
        grep -v '<none>' | sort -u | while IFS= read -r ref; do
        [[ $(ecli image inspect -f '{{index .Config.Labels "dev.deployctl.agent"}}' "$ref" 2>/dev/null) == "$me" ]] &&
            printf '%s\n' "$ref"
    done || true
}
image_exists() { ecli image inspect "$1" >/dev/null 2>&1; }

# cinspect NAME FORMAT: docker inspect -f FORMAT NAME (empty when there is no such container).
cinspect() { ecli inspect -f "$2" "$1" 2>/dev/null || true; }

# A one-line picture of the app's containers, for failure messages.
containers_summary() {
    ecli ps -a --filter "label=dev.deployctl.agent=$(agent_id)" ${1:+--filter "label=dev.deployctl.app=$1"} \
        --format '{{.Names}} {{.Status}} {{.Image}}' 2>&1 | paste -sd';' || true
}

# write_dockerfile REPO [steps=LINES] [cmd=SHELL COMMAND]
# FROM scratch + busybox; the default steps print "it-build-output-42" (a line
# that only the step's output has, not its "Step N : RUN" echo); extra steps
# go after them and before COPY site/. The default CMD prints
# "it-app-start port $PORT" and runs busybox httpd -vv (request lines on stderr).
IT_DEFAULT_CMD='echo it-app-start port $PORT; exec httpd -f -vv -p 127.0.0.1:$PORT -h /site'
write_dockerfile() {
    local repo=$1 steps="" cmd=$IT_DEFAULT_CMD kv
    shift
    for kv in "$@"; do
        case ${kv%%=*} in
        steps) steps=${kv#*=} ;; cmd) cmd=${kv#*=} ;;
        *) fail "write_dockerfile" "unknown key ${kv%%=*}" ;;
        esac
    done
    {
        printf 'FROM scratch\n'
        printf 'LABEL it.deployctl.run="%s"\n' "$IT_RUN_ID"
        printf 'COPY busybox /bin/busybox\n'
        printf 'RUN ["/bin/busybox","--install","-s","/bin"]\n'
        printf 'RUN ["/bin/sh","-c","echo it-build-output-$((6*7))"]\n'
        [[ -n $steps ]] && printf '%s\n' "$steps"
        printf 'COPY site/ /site/\n'
        printf 'CMD %s\n' "$(jq -cn --arg c "$cmd" '["/bin/sh","-c",$c]')"
    } >"$repo/Dockerfile"
}

# write_container_toml REPO APP [key=value...]
# keys: dockerfile (build.dockerfile, default "Dockerfile"; empty: not written,
# the agent finds ./Dockerfile itself), build_timeout (60s), build_memory,
# run (run.command), run_memory, health_path (/healthz), health_timeout (20s),
# keep (5), drain (200ms), standby (0s, as write_toml), hosts (as write_toml), extra (raw
# TOML appended last).
write_container_toml() {
    local repo=$1 app=$2
    shift 2
    local dockerfile=Dockerfile build_timeout=60s build_memory="" run="" run_memory=""
    local health_path=/healthz health_timeout=20s keep=5 drain=200ms standby=0s extra=""
    local hosts="\"${AGENT_URL:-http://127.0.0.1:7070}\"" kv
    for kv in "$@"; do
        local k=${kv%%=*} v=${kv#*=}
        case $k in
        dockerfile) dockerfile=$v ;; build_timeout) build_timeout=$v ;; build_memory) build_memory=$v ;;
        run) run=$v ;; run_memory) run_memory=$v ;; health_path) health_path=$v ;;
        health_timeout) health_timeout=$v ;; keep) keep=$v ;; drain) drain=$v ;;
        standby) standby=$v ;; hosts) hosts=$v ;; extra) extra=$v ;;
        *) fail "write_container_toml" "unknown key $k" ;;
        esac
    done
    {
        printf 'app = "%s"\n\n[build]\n' "$app"
        [[ -n $dockerfile ]] && printf 'dockerfile = %s\n' "$(toml_string "$dockerfile")"
        printf 'timeout = "%s"\n' "$build_timeout"
        [[ -n $build_memory ]] && printf 'memory = "%s"\n' "$build_memory"
        printf '\n[run]\n'
        [[ -n $run ]] && printf 'command = %s\n' "$(toml_string "$run")"
        [[ -n $run_memory ]] && printf 'memory = "%s"\n' "$run_memory"
        printf 'health = { path = "%s", interval = "200ms", timeout = "%s" }\n\n' "$health_path" "$health_timeout"
        printf '[deploy]\nkeep = %s\ndrain = "%s"\nstandby = "%s"\n' "$keep" "$drain" "$standby"
        if [[ -n $hosts ]]; then printf '\n[targets.local]\nhosts = [%s]\n' "$hosts"; fi
        if [[ -n $extra ]]; then printf '\n%s\n' "$extra"; fi
    } >"$repo/deploy.toml"
}

# make_container_repo NAME [key=value...]: a fresh git repo holding a static
# busybox, a Dockerfile (keys steps, cmd: write_dockerfile), site/index.html
# ("NAME site 1", or key site=TEXT), site/healthz and deploy.toml (the other
# keys: write_container_toml), committed. Sets REPO.
make_container_repo() {
    local name=$1 kv site="$1 site 1"
    shift
    local -a dargs=() targs=()
    for kv in "$@"; do
        case ${kv%%=*} in
        steps | cmd) dargs+=("$kv") ;;
        site) site=${kv#*=} ;;
        *) targs+=("$kv") ;;
        esac
    done
    [[ -n ${BUSYBOX_BIN:-} ]] || require_static_busybox
    REPO=$TEST_TMP/repos/$name
    mkdir -p "$REPO/site"
    git -C "$REPO" init -q -b main
    git -C "$REPO" config user.name "Integration Test"
    git -C "$REPO" config user.email "it@example.invalid"
    git -C "$REPO" config commit.gpgsign false
    cp "$BUSYBOX_BIN" "$REPO/busybox"
    chmod 755 "$REPO/busybox"
    write_dockerfile "$REPO" ${dargs[@]+"${dargs[@]}"}
    printf '%s\n' "$site" >"$REPO/site/index.html"
    printf 'ok\n' >"$REPO/site/healthz"
    write_container_toml "$REPO" "$name" ${targs[@]+"${targs[@]}"}
    git -C "$REPO" add -A
    git -C "$REPO" commit -q -m "Initial commit of $name (container)"
}

# make_engine_wrapper: WRAPPER, an engine CLI for the agent (--engine-bin) that
# appends each call's argv to ARGV_LOG, then runs docker.
make_engine_wrapper() {
    ARGV_LOG=$TEST_TMP/engine-argv.log
    WRAPPER=$TEST_TMP/docker-wrapper
    printf '#!/bin/sh\nprintf "%%s\\n" "$*" >>%q\nexec docker "$@"\n' "$ARGV_LOG" >"$WRAPPER"
    chmod +x "$WRAPPER"
}

# cleanup_containers RC: called by the EXIT trap. Removes, on every engine the
# test used, the containers and images labelled with this run's id or with the
# id of any agent the test started.
cleanup_containers() {
    local rc=${1:-0}
    [[ -s $TEST_TMP/engines ]] || return 0
    local -a filters=("label=it.deployctl.run=$IT_RUN_ID")
    local dir id eng f ids round n_c=0 n_i=0
    while IFS= read -r dir; do
        id=$(agent_id "$dir")
        [[ -n $id ]] && filters+=("label=dev.deployctl.agent=$id")
    done < <(cat "$TEST_TMP/agent.datadirs" 2>/dev/null)
    while IFS= read -r eng; do
        command -v "$eng" >/dev/null 2>&1 || continue
        if [[ $rc != 0 && $rc != 77 ]]; then
            for f in "${filters[@]}"; do
                printf '[%s] --- %s ps -a --filter %s\n' "$TEST_NAME" "$eng" "$f" >&2
                timeout 30 "$eng" ps -a --filter "$f" --format '{{.Names}}  {{.Status}}  {{.Image}}' 2>&1 |
                    sed 's/^/    /' >&2
            done
        fi
        ids=""
        for f in "${filters[@]}"; do
            ids+=" $(timeout 30 "$eng" ps -aq --filter "$f" 2>/dev/null)"
            [[ $eng == podman ]] && ids+=" $(timeout 30 podman ps -aq --external --filter "$f" 2>/dev/null)"
        done
        ids=$(tr ' ' '\n' <<<"$ids" | grep . | sort -u)
        if [[ -n $ids ]]; then
            n_c=$((n_c + $(wc -l <<<"$ids")))
            timeout 120 "$eng" rm -f $ids >/dev/null 2>&1
        fi
        # Removing an image frees its untagged parents; layers of a failed
        # build have no tagged child, so go round until nothing is left.
        for round in 1 2 3 4 5; do
            ids=""
            for f in "${filters[@]}"; do ids+=" $(timeout 30 "$eng" images -aq --filter "$f" 2>/dev/null)"; done
            ids=$(tr ' ' '\n' <<<"$ids" | grep . | sort -u)
            [[ -z $ids ]] && break
            ((round == 1)) && n_i=$((n_i + $(wc -l <<<"$ids")))
            timeout 120 "$eng" rmi -f $ids >/dev/null 2>&1
        done
        ids=""
        for f in "${filters[@]}"; do
            ids+=" $(timeout 30 "$eng" ps -aq --filter "$f" 2>/dev/null)"
            ids+=" $(timeout 30 "$eng" images -aq --filter "$f" 2>/dev/null)"
        done
        ids=$(tr ' ' '\n' <<<"$ids" | grep . | sort -u)
        [[ -n $ids ]] && printf '[%s] WARNING: %s containers/images survived cleanup: %s\n' \
            "$TEST_NAME" "$eng" "$(paste -sd' ' <<<"$ids")" >&2
    done <"$TEST_TMP/engines"
    if ((n_c + n_i)); then
        printf '[%s] cleanup: removed %d containers, %d images\n' "$TEST_NAME" "$n_c" "$n_i"
    fi
}

# ---------------------------------------------------------------- a clean Debian 12

# debian_rootfs DIR: a clean Debian 12 (debootstrap --variant=minbase, plus systemd and man-db:
# what a server running the unit has; nothing runs) unpacked into DIR. The first test of the
# day makes it from deb.debian.org (DEBIAN_MIRROR) and caches it as a tar under
# BUILD_DIR/test-cache; tests running at once wait for that one (flock). Needs root.
debian_rootfs() {
    local root=$1 mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    local cache=${BUILD_DIR:-$REPO_ROOT/build}/test-cache
    local tar=$cache/bookworm-minbase-$(date -u +%Y%m%d).tar start=$SECONDS
    mkdir -p "$cache" "$root"
    (
        flock 9
        [[ -s $tar ]] && exit 0
        local work=$cache/bootstrap.$$
        rm -rf "$work"
        debootstrap --variant=minbase bookworm "$work" "$mirror" >"$TEST_TMP/debootstrap.log" 2>&1 ||
            { tail -n 20 "$TEST_TMP/debootstrap.log" >&2; exit 1; }
        # dpkg without an fsync per file: every copy is thrown away after its test.
        echo force-unsafe-io >"$work/etc/dpkg/dpkg.cfg.d/unsafe-io"
        cp /etc/resolv.conf "$work/etc/resolv.conf"
        printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d" && chmod 755 "$work/usr/sbin/policy-rc.d"
        mount -t proc proc "$work/proc" || exit 1
        chroot "$work" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends systemd man-db >>"$TEST_TMP/debootstrap.log" 2>&1
        local rc=$?
        chroot "$work" apt-get clean
        umount "$work/proc" || umount -l "$work/proc"
        rm -f "$work/usr/sbin/policy-rc.d"
        [[ $rc == 0 ]] || { tail -n 20 "$TEST_TMP/debootstrap.log" >&2; exit 1; }
        rm -f "$cache"/bookworm-minbase-*.tar
        tar -C "$work" --numeric-owner -cf "$tar.$$" . && mv "$tar.$$" "$tar"
        rm -rf --one-file-system "$work"
    ) 9>"$cache/bootstrap.lock" || fail "a Debian 12 base system (debootstrap from $mirror)" "$(excerpt "$TEST_TMP/debootstrap.log")"
    tar -C "$root" --numeric-owner -xpf "$tar" || fail "unpack the base system $tar into $root"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    pass "a clean Debian 12 in $root ($((SECONDS - start)) s)"
}

# chroot_pids DIR: every process whose root is DIR.
chroot_pids() {
    find /proc/[0-9]*/root -maxdepth 0 -printf '%p %l\n' 2>/dev/null |
        ROOT=$1 awk '{ split($1, p, "/") } substr($0, length($1) + 2) == ENVIRON["ROOT"] { print p[3] }'
    return 0
}

# release_chroot DIR: kills what runs in DIR, unmounts what is mounted under it.
release_chroot() {
    local round pids m
    for round in 1 2 3 4 5; do
        pids=$(chroot_pids "$1")
        [[ -z $pids ]] && break
        kill -9 $pids 2>/dev/null
        sleep 0.2
    done
    for m in $(awk -v root="$1" 'index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    return 0
}
