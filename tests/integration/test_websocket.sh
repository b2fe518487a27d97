#!/usr/bin/env bash
# WebSockets through deploy-proxy (docs/api.md "Proxy routing table", Upgrade): a
# python3-websockets echo app behind the proxy answers over ws:// and wss:// (101, then raw
# bytes both ways); a 404 to a handshake reaches the client as 404; N connections held
# open through 3 redeploys ([deploy] drain = "3s") are closed only once the old release
# was stopped, and a reconnect reaches the new release; [proxy] websocket_idle = "2s"
# closes a quiet connection after ~2 s, and bytes moving keep it open; with [deploy]
# idle_stop = "2s" an open quiet WebSocket keeps the app awake, and a handshake to the
# sleeping app is held while it starts, then upgraded.
source "$(dirname "$0")/lib.sh"
require_binaries
PY=/usr/bin/python3 # Debian's, where python3-websockets is (scripts/deps)
"$PY" -c 'import websockets' 2>/dev/null || fail "python3-websockets is needed (scripts/deps installs it)"
command -v openssl >/dev/null || fail "openssl is needed (scripts/deps installs it)"
HERE=$(cd "$(dirname "$0")" && pwd)
client() { "$PY" "$HERE/websocket/client.py" "$@"; }
# 1,000 connections: the proxy holds 2 descriptors each; 200 where the limit is low.
N=${WS_CONNECTIONS:-1000}
fd_limit=$(ulimit -n)
[[ $fd_limit == unlimited ]] || ((fd_limit >= 4096)) || N=${WS_CONNECTIONS:-200}

make_test_ca "$TEST_TMP/pki"
issue_cert ws "DNS:ws.tls.test" 3001
HTTPS_PORT=$(free_port)
CONF=$TEST_TMP/agent.toml
cat >"$CONF" <<CONF
[proxy]
https_listen = "127.0.0.1:$HTTPS_PORT"
redirect_https = false

[[proxy.certificates]]
cert = "$PKI/ws.crt"
key = "$PKI/ws.key"
CONF
AGENT_EXTRA_ARGS=(--config "$CONF")
start_agent

APP=wsecho
MARKS=$TEST_TMP/marks
mkdir -p "$MARKS"
make_app_repo $APP build="true" run="exec $PY echo_app.py" drain=3s domains='"ws.tls.test"'
cp "$HERE/websocket/echo_app.py" "$REPO/echo_app.py"
printf '\n[env]\nMARKS = %s\n' "$(toml_string "$MARKS")" >>"$REPO/deploy.toml"
commit_change "$REPO" "echo app"
assert_exit 0 dctl deploy
expect_serving $APP "hello from v1" "v1: plain HTTP is still served"

WS_URI="ws://$APP.localhost:$PROXY_PORT/"
assert_eq "v1 hello" "$(client echo "$WS_URI" "$PROXY_PORT" 2>&1)" "ws:// through the proxy: 101, then an echo round trip"
assert_eq "v1 hello" "$(client echo "wss://ws.tls.test:$HTTPS_PORT/" "$HTTPS_PORT" "$PKI/ca.pem" 2>&1)" \
    "wss:// through the proxy's HTTPS listener: an echo round trip"
assert_eq "404" "$(client status "ws://$APP.localhost:$PROXY_PORT/nows" "$PROXY_PORT" 2>&1)" \
    "the app answers 404 to the handshake: the client gets 404"
assert_eq "101" "$(client status "$WS_URI" "$PROXY_PORT" 2>&1)" "after that the proxy still upgrades"
# A raw handshake: the proxy passes the app's 101 with its Upgrade and Connection fields.
RAW=$(curl -s -i --max-time 2 -H "Host: $APP.localhost" -H "Connection: Upgrade" -H "Upgrade: websocket" \
    -H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
    "http://127.0.0.1:$PROXY_PORT/" 2>/dev/null | tr -d '\r' || true)
assert_contains "$RAW" "HTTP/1.1 101" "a raw handshake: 101 Switching Protocols"
assert_contains "$RAW" "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" "a raw handshake: the app's accept key"
assert_match "$RAW" "[Uu]pgrade: websocket" "a raw handshake: Upgrade: websocket reaches the client"
# The access log has each upgrade as a 101, with the bytes of the 101's header.
upgrades_logged() {
    jq -e -s '[.[] | select(.status == 101)] | length >= 3 and all(.bytes_out > 100)' \
        "$DATA/apps/$APP/logs/access.ndjson" >/dev/null 2>&1
}
assert_true "the access log has the upgrades as 101s, with their header's bytes" wait_until 5 upgrades_logged

# --- N connections held through 3 redeploys -------------------------------------------------
HOLD=$TEST_TMP/hold
mkdir -p "$HOLD"
client hold "$WS_URI" "$PROXY_PORT" "$N" "$HOLD" >"$HOLD/report.json" 2>"$HOLD/err" &
HOLDER=$!
assert_true "$N connections open" wait_until 20 test -e "$HOLD/ready"
for v in 2 3 4; do
    commit_change "$REPO" "v$v" VERSION "$v"
    assert_exit 0 dctl deploy
    assert_eq "v$v hello" "$(client echo "$WS_URI" "$PROXY_PORT" 2>&1)" "v$v: a new connection reaches v$v"
done
stopped_v3() { test -e "$MARKS/stop.v3"; }
assert_true "v3 stopped after its drain" wait_until 15 stopped_v3
sleep 1
touch "$HOLD/stop"
wait "$HOLDER" || true
REPORT=$(cat "$HOLD/report.json")
assert_jq "$REPORT" ".failures == []" "no connection or reconnect failed ($(head -c 300 "$HOLD/err"))"
assert_jq "$REPORT" ".opened == $N" "$N connections were open on v1"
assert_jq "$REPORT" ".closed | length == $N" "all $N v1 connections ended when v1 was stopped"
# Each connection ended only after its release was stopped (after the drain), never at the switch.
for release in v1 v2 v3; do
    if [[ -e $MARKS/stop.$release ]]; then
        stop=$(cat "$MARKS/stop.$release")
        assert_jq "$REPORT" "[.closed[] | select(.release == \"$release\" and .at < $stop - 0.05)] | length == 0" \
            "no $release connection closed before $release was stopped"
    fi
done
assert_jq "$REPORT" ".reconnects | length == $N" "every closed connection reconnected"
assert_jq "$REPORT" "[.reconnects[] | select(.from >= .to)] | length == 0" \
    "every reconnect reached a newer release"
V1_STOP=$(cat "$MARKS/stop.v1")
log "v1 connections closed $(jq -r "[.closed[].at] | (min - $V1_STOP), (max - $V1_STOP)" <<<"$REPORT" | paste -sd' ') s after v1's stop"

# --- websocket_idle ---------------------------------------------------------------------------
printf '\n[proxy]\nwebsocket_idle = "2s"\n' >>"$REPO/deploy.toml"
commit_change "$REPO" "websocket_idle 2s" VERSION 5
assert_exit 0 dctl deploy
IDLE=$(client idle "$WS_URI" "$PROXY_PORT" 2>&1)
log "idle connection closed after ${IDLE% *} s, close code ${IDLE#* }"
assert_true "websocket_idle = 2s: kept open while bytes move every 1.5 s, closed ~2 s after the last ($IDLE)" \
    awk -v t="${IDLE% *}" 'BEGIN { exit !(t >= 1.9 && t < 3.5) }'
assert_eq "1001" "${IDLE#* }" "the idle connection ends with the proxy's close frame 1001 (going away)"

# --- the proxy's own shutdown closes upgraded connections with 1001 ----------------------------
GONE=$TEST_TMP/gone
"$PY" - "$WS_URI" "$PROXY_PORT" >"$GONE" 2>&1 <<'PY' &
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), ping_interval=None) as ws:
        await ws.send("x"); await ws.recv(); print("open", flush=True)
        try:
            await asyncio.wait_for(ws.recv(), 20)
        except websockets.ConnectionClosed:
            pass
        print(ws.close_code, flush=True)
asyncio.run(main())
PY
GONE_PID=$!
is_open() { grep -q open "$GONE"; }
assert_true "a connection is open" wait_until 5 is_open
OLD_PROXY=$(proxy_pid)
kill -TERM "$OLD_PROXY"
assert_true "SIGTERM: the proxy exits within its 1 s grace, not the 10 s drain timeout" wait_until 4 dead "$OLD_PROXY"
wait "$GONE_PID" || true
assert_eq "1001" "$(tail -1 "$GONE")" "SIGTERM: the open WebSocket gets the close frame 1001"

# --- [deploy] idle_stop: an open WebSocket keeps the app awake; a handshake wakes it ----------
proxy_back() { local p; p=$(proxy_pid); [[ -n $p && $p != "$OLD_PROXY" ]] && alive "$p"; }
assert_true "the agent starts deploy-proxy again" wait_until 10 proxy_back
sed -i -e '/^websocket_idle = "2s"$/d' -e 's/^\[deploy\]$/[deploy]\nidle_stop = "2s"/' "$REPO/deploy.toml"
commit_change "$REPO" "idle_stop 2s" VERSION 6
assert_exit 0 dctl deploy
QUIET=$TEST_TMP/quiet
"$PY" - "$WS_URI" "$PROXY_PORT" >"$QUIET" 2>&1 <<'PY' &
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), ping_interval=None) as ws:
        await ws.send("x"); print(await ws.recv(), flush=True)
        await asyncio.sleep(6)  # no byte either way
        await ws.send("y"); print(await ws.recv(), flush=True)
asyncio.run(main())
PY
QUIET_PID=$!
# Its first message answered (the handshake wakes the app if it fell asleep before Python got
# there): the app that answered it must stay up while the connection is quiet.
quiet_open() { [[ -s $QUIET ]]; }
assert_true "the quiet client's connection is open" wait_until 10 quiet_open
P6=$(app_pid $APP v6)
sleep 4.5
assert_true "idle_stop = 2s: a quiet open WebSocket keeps the app (pid $P6) awake 4.5 s on" alive "$P6"
wait "$QUIET_PID" || true
assert_eq "v6 x,v6 y" "$(paste -sd, "$QUIET")" "the connection still carries messages after 6 s"
assert_true "once it closed, the app falls asleep" wait_until 20 dead "$P6"
assert_eq "v6 hello" "$(client echo "$WS_URI" "$PROXY_PORT" 2>&1)" \
    "a WebSocket handshake to the sleeping app is held, the app started, then upgraded"
