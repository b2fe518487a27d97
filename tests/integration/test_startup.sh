#!/usr/bin/env bash
# What a new user meets on an agent's first start:
# - an address another program holds (the proxy's, the proxy's HTTPS one, the
#   API's) stops the agent at once, exit 1, with a message naming the address,
#   the reason and the fix; no "ready" line, no deploy-proxy left running;
# - the proxy on every address (--proxy-listen :PORT) starts and serves;
# - the data dir is the agent's alone: a pre-made 0755 one is made 0700 with a
#   warning, and after a deploy and an env set nothing in it is open to group
#   or others but the release trees (docs/security.md).
source "$(dirname "$0")/lib.sh"
require_binaries

# hold_port: another program listens on a free port of 127.0.0.1; sets HELD (the port)
# and HOLDER_PID. Another test may take the port between free_port and the bind: then
# the holder exits, and another port is tried.
hold_port() {
    local try
    for try in 1 2 3 4 5; do
        HELD=$(free_port)
        python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
time.sleep(120)
' "$HELD" 2>/dev/null &
        HOLDER_PID=$!
        disown "$HOLDER_PID"
        holding() { port_in_use "$HELD" || ! kill -0 "$HOLDER_PID" 2>/dev/null; }
        wait_until 10 holding
        kill -0 "$HOLDER_PID" 2>/dev/null && port_in_use "$HELD" && return 0
    done
    fail "a listener holds a port (5 tries)"
}

# start_failing NAME ARGS...: runs `deploy-agent serve` on its own data dir,
# expecting it to stop within 10 s; sets RC, ERR (its output) and NAME's DATA.
start_failing() {
    local name=$1
    shift
    DATA=$TEST_TMP/$name/data
    mkdir -p "$DATA"
    local log=$TEST_TMP/$name/agent.log
    RC=0
    timeout 10 "$AGENT_BIN" serve --data-dir "$DATA" --engine process --proxy-bin "$PROXY_BIN" \
        --socket "" "$@" </dev/null >"$log" 2>&1 || RC=$?
    ERR=$(<"$log")
}

# assert_nothing_left LABEL: no deploy-proxy of DATA runs.
assert_nothing_left() {
    local left
    left=$(pids_in_dir_matching "$DATA" deploy-proxy)
    if [[ -n $left ]]; then kill $left 2>/dev/null || true; fi
    assert_eq "" "$left" "$1: no deploy-proxy left running"
}

# expect_refused LABEL FOR SETTING: the last start_failing stopped with exit 1
# on the held port $HELD (listened on FOR: "deploy-proxy", "the API"), naming
# it, the reason and SETTING, printed no ready line and left no proxy; then
# the holder is stopped.
expect_refused() {
    local label=$1 for=$2 setting=$3
    assert_eq 1 "$RC" "$label by another program: exit 1"
    assert_contains "$ERR" "cannot listen on 127.0.0.1:$HELD for $for: Address already in use" \
        "$label: the message names the address and the reason"
    assert_contains "$ERR" "$setting" "$label: the message names the setting to change"
    assert_not_contains "$ERR" "deploy-agent ready" "$label: no ready line"
    assert_nothing_left "$label"
    kill "$HOLDER_PID" 2>/dev/null || true
}

# ---------------------------------------------------------------- the proxy's port

hold_port
start_failing proxy-held --listen "127.0.0.1:$(free_port)" --proxy-listen "127.0.0.1:$HELD"
expect_refused "proxy port held" deploy-proxy "--proxy-listen or [proxy] listen in agent.toml"

# ---------------------------------------------------------------- the proxy's HTTPS port

make_test_ca "$TEST_TMP/pki"
issue_cert shop "DNS:shop.startup.test" 1001
hold_port
printf '[proxy]\nhttps_listen = "127.0.0.1:%s"\n[[proxy.certificates]]\ncert = "%s"\nkey = "%s"\n' \
    "$HELD" "$PKI/shop.crt" "$PKI/shop.key" >"$TEST_TMP/https.toml"
start_failing https-held --config "$TEST_TMP/https.toml" --listen "127.0.0.1:$(free_port)" \
    --proxy-listen "127.0.0.1:$(free_port)"
expect_refused "HTTPS port held" deploy-proxy "[proxy] https_listen in agent.toml"

# ---------------------------------------------------------------- the API's port

hold_port
start_failing api-held --listen "127.0.0.1:$HELD" --proxy-listen "127.0.0.1:$(free_port)"
expect_refused "API port held" "the API" "--listen or listen in agent.toml"

# ---------------------------------------------------------------- the proxy on every address

# --proxy-listen ":PORT" ([proxy] listen = ":80", as agent.toml and docs/agent-config.md
# suggest for a server) was refused at start as "missing host".
DATA=$TEST_TMP/every/data
mkdir -p "$DATA"
every_port=$(free_port)
"$AGENT_BIN" serve --data-dir "$DATA" --engine process --proxy-bin "$PROXY_BIN" --socket "" \
    --listen "127.0.0.1:$(free_port)" --proxy-listen ":$every_port" </dev/null >"$TEST_TMP/every.log" 2>&1 &
every_pid=$!
every_ready() { grep -q "deploy-agent ready" "$TEST_TMP/every.log"; }
assert_true "--proxy-listen :PORT (every address): the agent starts" wait_until 10 every_ready
assert_contains "$(cat "$TEST_TMP/every.log")" "proxy http://0.0.0.0:$every_port" "its ready line says every address"
assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: none.localhost' "http://127.0.0.1:$every_port/")" \
    "deploy-proxy answers on 127.0.0.1:$every_port (no app of that name: 404)"
kill "$every_pid" 2>/dev/null || true
wait "$every_pid" 2>/dev/null || true
every_proxy=$(pids_in_dir_matching "$DATA" deploy-proxy) # it outlives the agent, by design
[[ -z $every_proxy ]] || kill $every_proxy 2>/dev/null || true

# ---------------------------------------------------------------- a second agent on the same proxy port

start_agent first
FIRST_PROXY_PORT=$PROXY_PORT
start_failing second --listen "127.0.0.1:$(free_port)" --proxy-listen "127.0.0.1:$FIRST_PROXY_PORT"
assert_eq 1 "$RC" "a second agent on the first one's proxy port: exit 1"
assert_contains "$ERR" "127.0.0.1:$FIRST_PROXY_PORT" "second agent: the message names the port"
assert_nothing_left "second agent"
DATA=$FIRST_DATA AGENT_PID=$FIRST_PID
kill_agent -TERM

# ---------------------------------------------------------------- the data dir's modes

DATA=$TEST_TMP/modes/data
AGENT_PORT=$(free_port)
PROXY_PORT=$(free_port)
mkdir -p "$DATA"
chmod 0755 "$DATA"
REUSE=1 start_agent modes
assert_eq 700 "$(stat -c %a "$DATA")" "a pre-made 0755 data dir is made 0700"
assert_contains "$(cat "$AGENT_LOG")" "$DATA was mode 0755, open to other users: made it 0700" \
    "the agent warns, naming the data dir"

make_app_repo hello
assert_exit 0 dctl env set GREETING=hi
assert_exit 0 dctl deploy
expect_serving hello "hello from 1" "v1 served"

# Release trees keep their repository's modes (an image built from one keeps
# them); they lie in apps/APP/releases/, which is 0700. So do the build cache's
# (its kept builds, node_modules as npm left it) in apps/APP/build-cache/, 0700 too.
open_files() { # FIND-PERM
    find "$DATA" \( -path "$DATA/apps/*/releases/*" -o -path "$DATA/apps/*/build-cache/*" \) -prune -o -perm "$1" -print
}
assert_eq 700 "$(stat -c %a "$DATA/apps/hello/build-cache")" "the build cache is the agent's alone (0700)"
assert_eq "" "$(open_files /o+rwx)" "nothing in the data dir is open to others"
assert_eq "" "$(open_files /g+rwx)" "nothing in the data dir is open to the group"
assert_eq 700 "$(stat -c %a "$DATA/apps/hello/releases")" "releases/ is 0700"
for f in state.db admin.token agent.id proxy/routes.json proxy/proxy.log apps/hello/logs/v1.ndjson; do
    [[ -e $DATA/$f ]] || fail "$f exists in the data dir"
    assert_eq 600 "$(stat -c %a "$DATA/$f")" "$f is 0600"
done
assert_eq 644 "$(stat -c %a "$DATA/apps/hello/releases/v1/VERSION")" "a release's files keep their mode"

# Restarted on a data dir made open again: tightened again, state.db too.
kill_agent -TERM
chmod 0750 "$DATA"
chmod 0644 "$DATA/state.db"
restart_agent modes
assert_eq 700 "$(stat -c %a "$DATA")" "restart: the data dir is 0700 again"
assert_eq 600 "$(stat -c %a "$DATA/state.db")" "restart: state.db is 0600 again"
assert_contains "$(cat "$AGENT_LOG")" "$DATA/state.db was mode 0644" "restart: the agent names state.db"
expect_serving hello "hello from 1" "restart: still served"

log "$CHECKS checks passed"
