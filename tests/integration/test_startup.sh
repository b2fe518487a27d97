#!/usr/bin/env bash
# What a new user meets on an agent's first start:
# an address another program holds (the proxy's, the proxy's HTTPS one, the
# API's) stops the agent at once, exit 1, with a message naming the address,
# the reason and the fix; no "ready" line, no deploy-proxy left running.
source "$(dirname "$0")/lib.sh"
require_binaries

# hold_port PORT: another program listens on 127.0.0.1:PORT; sets HOLDER_PID.
hold_port() {
    python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
time.sleep(120)
' "$1" &
    HOLDER_PID=$!
    disown "$HOLDER_PID"
    wait_until 5 port_in_use "$1" || fail "a listener holds port $1"
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

# ---------------------------------------------------------------- the proxy's port

HELD=$(free_port)
hold_port "$HELD"
start_failing proxy-held --listen "127.0.0.1:$(free_port)" --proxy-listen "127.0.0.1:$HELD"
assert_eq 1 "$RC" "proxy port held by another program: exit 1 (not left running)"
assert_contains "$ERR" "cannot listen on 127.0.0.1:$HELD for deploy-proxy: Address already in use" \
    "proxy port held: the message names the address and the reason"
assert_contains "$ERR" "--proxy-listen" "proxy port held: the message names the setting to change"
assert_not_contains "$ERR" "deploy-agent ready" "proxy port held: no ready line"
assert_nothing_left "proxy port held"
kill "$HOLDER_PID" 2>/dev/null || true

# ---------------------------------------------------------------- the proxy's HTTPS port

make_test_ca "$TEST_TMP/pki"
issue_cert shop "DNS:shop.startup.test" 1001
HELD=$(free_port)
hold_port "$HELD"
printf '[proxy]\nhttps_listen = "127.0.0.1:%s"\n[[proxy.certificates]]\ncert = "%s"\nkey = "%s"\n' \
    "$HELD" "$PKI/shop.crt" "$PKI/shop.key" >"$TEST_TMP/https.toml"
start_failing https-held --config "$TEST_TMP/https.toml" --listen "127.0.0.1:$(free_port)" \
    --proxy-listen "127.0.0.1:$(free_port)"
assert_eq 1 "$RC" "HTTPS port held by another program: exit 1"
assert_contains "$ERR" "cannot listen on 127.0.0.1:$HELD for deploy-proxy: Address already in use" \
    "HTTPS port held: the message names the address and the reason"
assert_contains "$ERR" "https_listen" "HTTPS port held: the message names the setting to change"
assert_not_contains "$ERR" "deploy-agent ready" "HTTPS port held: no ready line"
assert_nothing_left "HTTPS port held"
kill "$HOLDER_PID" 2>/dev/null || true

# ---------------------------------------------------------------- the API's port

HELD=$(free_port)
hold_port "$HELD"
start_failing api-held --listen "127.0.0.1:$HELD" --proxy-listen "127.0.0.1:$(free_port)"
assert_eq 1 "$RC" "API port held by another program: exit 1"
assert_contains "$ERR" "cannot listen on 127.0.0.1:$HELD for the API: Address already in use" \
    "API port held: the message names the address and the reason"
assert_contains "$ERR" "--listen or listen in agent.toml" "API port held: the message names the setting to change"
assert_not_contains "$ERR" "deploy-agent ready" "API port held: no ready line"
assert_nothing_left "API port held"
kill "$HOLDER_PID" 2>/dev/null || true

# ---------------------------------------------------------------- a second agent on the same proxy port

start_agent first
FIRST_PROXY_PORT=$PROXY_PORT
start_failing second --listen "127.0.0.1:$(free_port)" --proxy-listen "127.0.0.1:$FIRST_PROXY_PORT"
assert_eq 1 "$RC" "a second agent on the first one's proxy port: exit 1"
assert_contains "$ERR" "127.0.0.1:$FIRST_PROXY_PORT" "second agent: the message names the port"
assert_nothing_left "second agent"
DATA=$FIRST_DATA AGENT_PID=$FIRST_PID
kill_agent -TERM

log "$CHECKS checks passed"
