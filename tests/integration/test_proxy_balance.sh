#!/usr/bin/env bash
# deploy-proxy balances an app route over several upstreams ("upstreams" in
# routes.json, docs/api.md "Proxy routing table"): round robin spreads the
# requests over all of them; an upstream killed -9 under load costs no failed
# request (failover to the next upstream, then passive health skips it); a
# table switching between "upstream" and "upstreams" applies; a POST that
# reached an upstream which then died is never sent to another one, one that
# could not connect is; the probe still names the release.
# deploy-proxy runs here on its own, with a routes.json written by the test and
# small Python upstreams that answer with their port.
source "$(dirname "$0")/lib.sh"
[[ -x $PROXY_BIN ]] || fail "binary present" "expected an executable at $PROXY_BIN (build deploy-proxy first)"
for tool in python3 wrk curl ss; do
    command -v "$tool" >/dev/null || {
        log "SKIP: needs $tool (Debian: apt-get install python3 wrk curl iproute2)"
        exit 77
    }
done

W=$TEST_TMP/balance
mkdir -p "$W"
HOST=web.localhost

# An upstream: answers "port=PORT" to every request (HTTP/1.1, keep-alive).
# MODE drop: reads the request, notes it, then closes without a byte of answer
# (an instance that died once the request reached it). Every request is noted
# in $W/seen-PORT as "METHOD PATH".
cat >"$W/upstream.py" <<'EOF'
import http.server, os, socketserver, sys
port, mode, seen = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # header and body in one write
    def log_message(self, *args):
        pass
    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with open(seen, "a") as f:
            f.write(f"{self.command} {self.path}\n")
        if mode == "drop":
            self.close_connection = True
            return
        body = f"port={port}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

Server(("127.0.0.1", port), Handler).serve_forever()
EOF

# start_upstream MODE: starts one on a free port; prints "PORT PID".
declare -A UP_PID=()
start_upstream() {
    local port
    port=$(free_port)
    python3 "$W/upstream.py" "$port" "$1" "$W/seen-$port" >"$W/upstream-$port.log" 2>&1 &
    UP_PID[$port]=$!
    wait_until 10 port_in_use "$port" || fail "upstream on :$port listens" "$(excerpt "$W/upstream-$port.log")"
    echo "$port" >>"$W/upstream-ports"
}
new_upstream() { # sets NEW_PORT
    start_upstream "$1"
    NEW_PORT=$(tail -n1 "$W/upstream-ports")
}

PROXY_PORT=$(free_port)
PROBE_KEY=probe-$RANDOM$RANDOM
printf '%s\n' "$PROBE_KEY" >"$W/probe.key"
GENERATION=0

# set_route JSON_FIELDS: writes the table (one route for $HOST with those
# fields) under the next generation and waits until the proxy applied it.
set_route() {
    GENERATION=$((GENERATION + 1))
    printf '{"generation": %d, "routes": [{"host": "%s", "app": "web", "release": "v%d", %s}]}\n' \
        "$GENERATION" "$HOST" "$GENERATION" "$1" >"$W/routes.json.tmp"
    mv "$W/routes.json.tmp" "$W/routes.json"
    [[ -n ${PROXY:-} ]] || return 0
    kill -HUP "$PROXY"
    wait_until 10 grep -qx "$GENERATION" "$W/applied" 2>/dev/null ||
        fail "deploy-proxy applies generation $GENERATION" "routes.json: $(cat "$W/routes.json")" \
            "applied: $(cat "$W/applied" 2>/dev/null)" "$(excerpt "$W/proxy.log")"
}
list() { # list PORT...: "127.0.0.1:P1", "127.0.0.1:P2"
    local p out=""
    for p in "$@"; do out+="${out:+, }\"127.0.0.1:$p\""; done
    echo "$out"
}
get() { curl -s --max-time 10 -H "Host: $HOST" "$@" "http://127.0.0.1:$PROXY_PORT/"; }
code() { curl -s -o "$W/body" -w '%{http_code}' --max-time 10 -H "Host: $HOST" "$@" "http://127.0.0.1:$PROXY_PORT/"; }

new_upstream ok; A=$NEW_PORT
new_upstream ok; B=$NEW_PORT
new_upstream ok; C=$NEW_PORT

set_route "\"upstream\": \"127.0.0.1:$A\""
"$PROXY_BIN" --listen "127.0.0.1:$PROXY_PORT" --routes "$W/routes.json" --threads 2 \
    --probe-key "$W/probe.key" --log-level info >"$W/proxy.log" 2>&1 &
PROXY=$!
wait_until 10 port_in_use "$PROXY_PORT" || fail "deploy-proxy listens" "$(excerpt "$W/proxy.log")"
wait_until 10 grep -qx 1 "$W/applied" 2>/dev/null || fail "deploy-proxy applies generation 1" "$(excerpt "$W/proxy.log")"

# spread N: N requests, one connection each; prints "PORT COUNT" lines, sorted by port.
spread() {
    local i
    for i in $(seq "$1"); do get || echo "curl-failed"; done | sort | uniq -c | awk '{print $2, $1}'
}

# ------------------------------------------------ the one-upstream form
assert_eq "port=$A 6" "$(spread 6)" "\"upstream\": every request goes to the one upstream"

# ------------------------------------------------ round robin
set_route "\"upstreams\": [$(list "$A" "$B" "$C")]"
out=$(spread 30)
assert_eq "$(printf 'port=%s 10\n' "$A" "$B" "$C" | sort)" "$out" \
    "\"upstreams\" (generation $GENERATION): 30 requests, 10 on each of the three (round robin)"
# Over keep-alive connections too (pooled upstream connections per upstream).
urls=()
for i in $(seq 12); do urls+=("http://127.0.0.1:$PROXY_PORT/"); done
out=$(curl -s --max-time 10 -H "Host: $HOST" "${urls[@]}" | sort | uniq -c | awk '{print $2, $1}')
assert_eq "$(printf 'port=%s 4\n' "$A" "$B" "$C" | sort)" "$out" \
    "12 requests on one client connection: 4 on each upstream"

# ------------------------------------------------ the probe
probe_headers=$(curl -s -D - -o /dev/null --max-time 10 -H "Host: $HOST" -H "X-Deploy-Probe: $PROBE_KEY" \
    "http://127.0.0.1:$PROXY_PORT/")
assert_contains "$probe_headers" "X-Deploy-Routed: web v$GENERATION" \
    "a probe through a route with several upstreams names the release"

# ------------------------------------------------ back to one upstream
set_route "\"upstream\": \"127.0.0.1:$B\""
assert_eq "port=$B 6" "$(spread 6)" "back to \"upstream\" (generation $GENERATION): all on that one"

# ------------------------------------------------ a dead upstream in the list
DEAD=$(free_port) # nothing listens there
set_route "\"upstreams\": [$(list "$DEAD" "$A")]"
out=$(spread 8)
assert_eq "port=$A 8" "$out" "an upstream that refuses connections: every request answered by the other"
assert_contains "$(cat "$W/proxy.log")" "cannot connect to 127.0.0.1:$DEAD" "the log names the upstream that failed"
assert_contains "$(cat "$W/proxy.log")" "retrying on 127.0.0.1:$A" "... and the one the request went to instead"

# A POST that never reached an upstream (connection refused) goes to the next one.
set_route "\"upstreams\": [$(list "$DEAD" "$A")]" # a new table: round robin starts on $DEAD
: >"$W/seen-$A"
assert_eq 200 "$(code -X POST --data 'x=1' )" "POST: $DEAD refuses the connection → answered by $A"
assert_eq "port=$A" "$(cat "$W/body")" "... whose answer it is"
assert_eq "POST /" "$(cat "$W/seen-$A")" "... which got the POST once"

# ------------------------------------------------ an upstream that dies once the request reached it
new_upstream drop; D=$NEW_PORT
set_route "\"upstreams\": [$(list "$D" "$B")]" # a new table: round robin starts on $D
: >"$W/seen-$B"
: >"$W/seen-$D"
assert_eq 502 "$(code -X POST --data 'x=1')" \
    "POST that reached an upstream which closed without answering: 502, not retried elsewhere"
assert_eq "POST /" "$(cat "$W/seen-$D")" "... $D got it"
assert_eq "" "$(cat "$W/seen-$B")" "... $B never did"
set_route "\"upstreams\": [$(list "$D" "$B")]"
: >"$W/seen-$D"
assert_eq 200 "$(code)" "GET (idempotent) that reached an upstream which closed without answering: retried on the next"
assert_eq "port=$B" "$(cat "$W/body")" "... and answered by $B"
assert_eq "GET /" "$(cat "$W/seen-$D")" "... after $D got it"
set_route "\"upstreams\": [$(list "$D" "$B")]"
assert_eq 200 "$(code -X PUT --data 'x=1')" "PUT (idempotent): retried on the next as well"
assert_eq "port=$B" "$(cat "$W/body")" "... answered by $B"
assert_contains "$(cat "$W/proxy.log")" "no response from 127.0.0.1:$D" "the log names the upstream that did not answer"
# Every upstream failing: 502 after each was tried once.
set_route "\"upstreams\": [$(list "$D" "$DEAD")]"
assert_eq 502 "$(code)" "GET when every upstream fails: 502"

# ------------------------------------------------ kill -9 under load
set_route "\"upstreams\": [$(list "$A" "$B" "$C")]"
wrk -t2 -c16 -d6s --timeout 5s -H "Host: $HOST" "http://127.0.0.1:$PROXY_PORT/" >"$W/wrk.out" 2>&1 &
WRK=$!
sleep 2
kill -9 "${UP_PID[$C]}"
wait_until 5 dead "${UP_PID[$C]}" || fail "upstream $C killed"
expect_wrk_clean "$WRK" "$W/wrk.out" "while $C was killed -9"
assert_contains "$(cat "$W/proxy.log")" "cannot connect to 127.0.0.1:$C" "the log names the killed upstream"
# Afterwards: the two left answer everything and share it (the dead one's turn
# goes to the next one, so not exactly evenly).
out=$(spread 20)
n_a=$(sed -n "s/^port=$A //p" <<<"$out")
n_b=$(sed -n "s/^port=$B //p" <<<"$out")
[[ $((${n_a:-0} + ${n_b:-0})) == 20 && ${n_a:-0} -ge 3 && ${n_b:-0} -ge 3 ]] ||
    fail "after the kill: 20 requests, all answered by the two live upstreams, each some" "got: $out"
pass "after the kill: 20 requests, all answered by the two live upstreams ($A: $n_a, $B: $n_b)"
alive "$PROXY" || fail "deploy-proxy still runs" "$(excerpt "$W/proxy.log")"
pass "deploy-proxy still runs"
