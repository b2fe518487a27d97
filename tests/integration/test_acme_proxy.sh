#!/usr/bin/env bash
# deploy-proxy's side of ACME (issue 22), deploy-proxy on its own with
# --acme-dir on files this test writes as the agent would (acme.hpp): it
# listens for HTTPS before it has any certificate; the managed certificates of
# certs/ are served (a wildcard's file is _.DOMAIN), new ones picked up on
# SIGHUP or by the 250 ms check without a restart, a broken one left out while
# the others serve; plain HTTP to a managed name is redirected; the http-01
# answers of http-01/TOKEN are served for any host on both listeners, before
# routing (an absent token is routed, a token with other characters is never
# a file name); a ClientHello offering ALPN acme-tls/1 gets the TLS-ALPN-01
# certificate of tls-alpn-01/NAME and nothing after the handshake, and is
# refused for a name without one. With --on-demand-tls, a handshake for a name
# no certificate covers sends the name to certificate.sock and waits: the
# certificate written meanwhile is served to that same handshake; without an
# agent listening nothing waits, and SIGTERM does not wait for a held one.
source "$(dirname "$0")/lib.sh"
[[ -x $PROXY_BIN ]] || fail "binary present" "expected an executable at $PROXY_BIN (build deploy-proxy first)"
require_tools "openssl python3 curl iproute2" openssl python3 curl ss

W=$TEST_TMP/acme-proxy
ACME=$W/acme
mkdir -p "$W/routes" "$ACME"
make_test_ca "$W/pki"

# The app: answers "app HOST PATH" to every request.
cat >"$W/app.py" <<'EOF'
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        body = f"app {self.headers.get('Host', '').split(':')[0]} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF
APP_PORT=$(free_port)
python3 "$W/app.py" "$APP_PORT" >"$W/app.log" 2>&1 &
wait_until 10 port_in_use "$APP_PORT" || fail "the app listens" "$(excerpt "$W/app.log")"

# Every name of the test is routed to the app, but unrouted.acme.test.
routes() { # DIR
    local out="" host
    for host in shop.acme.test blog.acme.test x.wild.acme.test ondemand.acme.test \
        held.acme.test nosock.acme.test; do
        out+="${out:+, }{\"host\": \"$host\", \"app\": \"web\", \"release\": \"v1\", \"upstream\": \"127.0.0.1:$APP_PORT\"}"
    done
    printf '{"generation": 1, "routes": [%s]}\n' "$out" >"$1/routes.json"
}
routes "$W/routes"

# managed_cert DIR NAME SANS SERIAL: DIR/NAME.key, then DIR/NAME.crt, signed by the
# test CA, each written beside and renamed into place (as the agent does).
managed_cert() {
    local dir=$1 name=$2 sans=$3 serial=$4 tmp=$W/tmp-$RANDOM
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$tmp.key" -out "$tmp.csr" 2>/dev/null || fail "CSR for $name"
    printf 'subjectAltName=%s\n' "$sans" >"$tmp.ext"
    openssl x509 -req -in "$tmp.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -days 2 \
        -set_serial "$serial" -extfile "$tmp.ext" -out "$tmp.crt" 2>/dev/null || fail "sign $name"
    mkdir -p "$dir"
    mv "$tmp.key" "$dir/$name.key"
    mv "$tmp.crt" "$dir/$name.crt"
}

PROXY_PORT=$(free_port)
HTTPS_PORT=$(free_port)
"$PROXY_BIN" --listen "127.0.0.1:$PROXY_PORT" --tls-listen "127.0.0.1:$HTTPS_PORT" \
    --routes "$W/routes/routes.json" --acme-dir "$ACME" --redirect-https >"$W/proxy.log" 2>&1 &
PROXY=$!
wait_until 10 port_in_use "$HTTPS_PORT" || fail "deploy-proxy listens for HTTPS" "$(excerpt "$W/proxy.log")"

# https_get NAME [PATH] [PORT]: the body over HTTPS, verified against the test CA.
https_get() {
    curl -sS --max-time 5 --cacert "$PKI/ca.pem" --resolve "$1:${3:-$HTTPS_PORT}:127.0.0.1" \
        "https://$1:${3:-$HTTPS_PORT}${2:-/}" 2>&1 || true
}
# served NAME [s_client options...]: the serial of the certificate shown for NAME.
served() {
    local name=$1
    shift
    openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$name" "$@" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}
serves() { [[ $(served "$1") == "$2" ]]; }

# ------------------------------------------------ no certificate yet
assert_contains "$("$PROXY_BIN" --help)" "--acme-dir" "--help documents --acme-dir"
assert_contains "$("$PROXY_BIN" --help)" "--on-demand-tls" "--help documents --on-demand-tls"
assert_exit 2 "$PROXY_BIN" --routes "$W/routes/routes.json" --on-demand-tls
assert_contains "$ERR" "--on-demand-tls needs --acme-dir" "--on-demand-tls alone is refused"
assert_contains "$(cat "$W/proxy.log")" "HTTPS on 127.0.0.1:$HTTPS_PORT" \
    "HTTPS is on with --acme-dir alone"
assert_contains "$(cat "$W/proxy.log")" "no certificate yet" "the proxy says it has no certificate yet"
out=$(https_get shop.acme.test)
assert_not_contains "$out" "app shop.acme.test" "no certificate: the handshake fails"
assert_eq "" "$(served shop.acme.test)" "and no certificate is shown"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: shop.acme.test" "http://127.0.0.1:$PROXY_PORT/")
assert_eq 200 "$code" "plain HTTP to a name no certificate covers is served, not redirected"

# ------------------------------------------------ managed certificates
managed_cert "$ACME/certs" shop.acme.test "DNS:shop.acme.test" 4097
kill -HUP "$PROXY"
assert_true "the new certificate is served after SIGHUP" wait_until 5 serves shop.acme.test 1001
assert_eq "app shop.acme.test /" "$(https_get shop.acme.test)" "shop.acme.test over HTTPS, verified"
# The 250 ms check may find the new files before the SIGHUP does (then SIGHUP finds no change):
# either way, one line for the certificate.
loaded=$(grep -cF -e "certificate reloaded (SIGHUP): $ACME/certs/shop.acme.test.crt for shop.acme.test" \
    -e "certificate reloaded (file changed): $ACME/certs/shop.acme.test.crt for shop.acme.test" \
    "$W/proxy.log" || true)
assert_eq 1 "$loaded" "one line per certificate loaded"

managed_cert "$ACME/certs" blog.acme.test "DNS:blog.acme.test" 8193
kill -HUP "$PROXY"
assert_true "a second pair is served after SIGHUP" wait_until 5 serves blog.acme.test 2001
assert_eq "app blog.acme.test /" "$(https_get blog.acme.test)" "blog.acme.test over HTTPS, verified"
assert_eq 1001 "$(served shop.acme.test)" "shop keeps its certificate"
# No SIGHUP: the 250 ms check finds it.
managed_cert "$ACME/certs" _.wild.acme.test "DNS:*.wild.acme.test" 12289
assert_true "a wildcard's _.DOMAIN pair is found without a signal" wait_until 5 serves x.wild.acme.test 3001
assert_eq "app x.wild.acme.test /" "$(https_get x.wild.acme.test)" "x.wild.acme.test over HTTPS, verified"
assert_true "the same proxy process all along" kill -0 "$PROXY"

# A broken pair (a key that is not its certificate's) is left out; the others serve.
managed_cert "$ACME/certs" bad.acme.test "DNS:bad.acme.test" 16385
cp "$ACME/certs/shop.acme.test.key" "$ACME/certs/bad.acme.test.key.tmp"
mv "$ACME/certs/bad.acme.test.key.tmp" "$ACME/certs/bad.acme.test.key"
# The certificate written again after its key, as the agent writes a pair: a key alone is a
# renewal half done, which the proxy does not look at (the 250 ms check may have loaded the
# good pair already).
cp "$ACME/certs/bad.acme.test.crt" "$ACME/certs/bad.acme.test.crt.tmp"
mv "$ACME/certs/bad.acme.test.crt.tmp" "$ACME/certs/bad.acme.test.crt"
kill -HUP "$PROXY"
assert_true "the broken pair is logged" \
    wait_until 5 grep -q "managed certificate left out: the TLS key $ACME/certs/bad.acme.test.key does not belong" "$W/proxy.log"
assert_eq "app blog.acme.test /" "$(https_get blog.acme.test)" "the other certificates still serve"
assert_eq 1001 "$(served shop.acme.test)" "shop still has its certificate"

# Renewed: the same name, a new certificate.
managed_cert "$ACME/certs" shop.acme.test "DNS:shop.acme.test" 4098
kill -HUP "$PROXY"
assert_true "a renewed certificate is served" wait_until 5 serves shop.acme.test 1002

# ------------------------------------------------ redirects see managed certificates
headers=$(curl -sS -o /dev/null -D - --max-time 5 -H "Host: shop.acme.test" \
    "http://127.0.0.1:$PROXY_PORT/a?b=1" | tr -d '\r')
assert_contains "$headers" "HTTP/1.1 308" "plain HTTP to a managed name is redirected"
assert_contains "$headers" "Location: https://shop.acme.test:$HTTPS_PORT/a?b=1" "to https"

# ------------------------------------------------ http-01
mkdir -p "$ACME/http-01"
TOKEN=Xk3_j-9LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyj
printf '%s.thumbprint-of-the-account-key' "$TOKEN" >"$ACME/http-01/$TOKEN"
challenge() { # HOST PATH [curl options]: status, content type and body, one line each
    local host=$1 path=$2
    shift 2
    curl -sS --max-time 5 -H "Host: $host" -o "$W/body" -w '%{http_code}\n%{content_type}\n' "$@" \
        "http://127.0.0.1:$PROXY_PORT$path" 2>&1
    cat "$W/body" 2>/dev/null
}
out=$(challenge unrouted.acme.test "/.well-known/acme-challenge/$TOKEN")
assert_eq "$(printf '200\ntext/plain\n%s.thumbprint-of-the-account-key' "$TOKEN")" "$out" \
    "a token's file answers its http-01 challenge, for a host no route has"
out=$(challenge shop.acme.test "/.well-known/acme-challenge/$TOKEN")
assert_eq "200" "$(head -1 <<<"$out")" "and for a managed name, not redirected"
out=$(curl -sS --max-time 5 --resolve "shop.acme.test:$HTTPS_PORT:127.0.0.1" --cacert "$PKI/ca.pem" \
    "https://shop.acme.test:$HTTPS_PORT/.well-known/acme-challenge/$TOKEN")
assert_eq "$TOKEN.thumbprint-of-the-account-key" "$out" "and on the HTTPS listener"
out=$(challenge shop.acme.test "/.well-known/acme-challenge/missing-token")
assert_eq "$(printf '200\ntext/plain\napp shop.acme.test /.well-known/acme-challenge/missing-token')" "$out" \
    "a token without a file is routed (to the app, not redirected)"
out=$(challenge unrouted.acme.test "/.well-known/acme-challenge/missing-token")
assert_eq 404 "$(head -1 <<<"$out")" "and 404 for a host no route has"
printf 'secret' >"$ACME/secret"
printf 'leak' >"$ACME/http-01/..%2fsecret"
for path in "/.well-known/acme-challenge/..%2fsecret" "/.well-known/acme-challenge/..%2f..%2fsecret" \
    "/.well-known/acme-challenge/$TOKEN?x=1" "/.well-known/acme-challenge/$TOKEN/"; do
    out=$(challenge unrouted.acme.test "$path" --path-as-is)
    assert_eq 404 "$(head -1 <<<"$out")" "$path: not a token, routed (404), no file read"
done
rm "$ACME/http-01/$TOKEN"
out=$(challenge unrouted.acme.test "/.well-known/acme-challenge/$TOKEN")
assert_eq 404 "$(head -1 <<<"$out")" "a token whose file is gone is no longer answered (read per request)"

# ------------------------------------------------ TLS-ALPN-01
# The challenge certificate (RFC 8737): self-signed, the name, the acmeIdentifier extension.
mkdir -p "$W/alpn"
digest=$(printf 'key-authorization' | openssl dgst -sha256 -hex | awk '{print $NF}' | sed 's/../&:/g; s/:$//')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=acme challenge" \
    -days 1 -set_serial 20481 -keyout "$W/alpn/key" -out "$W/alpn/crt" \
    -addext "subjectAltName=DNS:shop.acme.test" -addext "1.3.6.1.5.5.7.1.31=critical,DER:04:20:$digest" \
    2>"$W/alpn/err" || fail "make the TLS-ALPN-01 certificate" "$(cat "$W/alpn/err")"
mkdir -p "$ACME/tls-alpn-01"
mv "$W/alpn/key" "$ACME/tls-alpn-01/shop.acme.test.key"
mv "$W/alpn/crt" "$ACME/tls-alpn-01/shop.acme.test.crt"
kill -HUP "$PROXY"
alpn_serves() { [[ $(served shop.acme.test -alpn acme-tls/1) == 5001 ]]; }
assert_true "acme-tls/1 for shop.acme.test gets the challenge certificate" wait_until 5 alpn_serves
out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername shop.acme.test -alpn acme-tls/1 </dev/null 2>&1 || true)
assert_contains "$out" "ALPN protocol: acme-tls/1" "and acme-tls/1 is negotiated"
assert_contains "$(cat "$W/proxy.log")" "$ACME/tls-alpn-01/shop.acme.test.crt (ACME TLS-ALPN-01 challenge for shop.acme.test)" \
    "the challenge certificate is logged"
assert_eq 1002 "$(served shop.acme.test -alpn http/1.1)" "http/1.1 for the same name: the managed certificate"
assert_eq 1002 "$(served shop.acme.test)" "no ALPN: the managed certificate"
assert_eq "app shop.acme.test /" "$(https_get shop.acme.test)" "and HTTPS clients are served as before"
out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername blog.acme.test -alpn acme-tls/1 </dev/null 2>&1 || true)
assert_not_contains "$out" "ALPN protocol: acme-tls/1" "acme-tls/1 for a name without a challenge: refused"
assert_not_contains "$out" "BEGIN CERTIFICATE" "with no certificate shown"
# Nothing but the handshake: a request sent after it gets no answer, the connection ends.
out=$(timeout 10 python3 - "$HTTPS_PORT" <<'EOF' 2>&1 || true
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.set_alpn_protocols(["acme-tls/1"])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as raw:
    with context.wrap_socket(raw, server_hostname="shop.acme.test") as tls:
        print("negotiated", tls.selected_alpn_protocol())
        try:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: shop.acme.test\r\n\r\n")
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
            print("answer:", answer.decode(errors="replace") or "none;", "closed")
        except TimeoutError:
            print("still open after 5 s")
        except (OSError, ssl.SSLError) as e:
            print("closed", type(e).__name__)
EOF
)
assert_contains "$out" "negotiated acme-tls/1" "a TLS-ALPN-01 connection handshakes"
assert_contains "$out" "closed" "and is closed by the proxy after it"
assert_not_contains "$out" "app shop.acme.test" "and gets no HTTP answer after it"

# ------------------------------------------------ on-demand TLS
# A second proxy with its own routes dir (certificate.sock beside routes.json) and ACME dir.
OD=$W/on-demand
mkdir -p "$OD/routes" "$OD/acme"
routes "$OD/routes"
: >"$OD/asked"
OD_PORT=$(free_port)
OD_HTTPS=$(free_port)
"$PROXY_BIN" --listen "127.0.0.1:$OD_PORT" --tls-listen "127.0.0.1:$OD_HTTPS" \
    --routes "$OD/routes/routes.json" --acme-dir "$OD/acme" --on-demand-tls \
    --log-level debug >"$OD/proxy.log" 2>&1 &
OD_PROXY=$!
wait_until 10 port_in_use "$OD_HTTPS" || fail "the on-demand proxy listens" "$(excerpt "$OD/proxy.log")"
assert_contains "$(cat "$OD/proxy.log")" "on-demand TLS: a name no certificate covers is asked of $OD/routes/certificate.sock" \
    "the on-demand proxy says where it asks"
managed_cert "$OD/acme/certs" shop.acme.test "DNS:shop.acme.test" 4099

# No agent listening: nothing to wait for, the handshake fails at once.
started=$(date +%s%N)
out=$(https_get nosock.acme.test / "$OD_HTTPS")
took=$((($(date +%s%N) - started) / 1000000))
assert_not_contains "$out" "app nosock" "no agent: an uncovered name is not served"
assert_true "and its handshake did not wait (${took} ms)" test "$took" -lt 3000

# The agent's socket: every datagram a line of $OD/asked.
cat >"$OD/agent.py" <<'EOF'
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path + ".tmp")
os.rename(path + ".tmp", path)
while True:
    data = s.recv(4096)
    with open(out, "a") as f:
        f.write(data.decode(errors="replace") + "\n")
EOF
python3 "$OD/agent.py" "$OD/routes/certificate.sock" "$OD/asked" >"$OD/agent.log" 2>&1 &
wait_until 10 test -S "$OD/routes/certificate.sock" || fail "the test's agent socket" "$(excerpt "$OD/agent.log")"

assert_true "a covered name is served at once" \
    wait_until 5 bash -c "[[ \$(curl -sS --max-time 5 --cacert '$PKI/ca.pem' --resolve 'shop.acme.test:$OD_HTTPS:127.0.0.1' https://shop.acme.test:$OD_HTTPS/) == 'app shop.acme.test /' ]]"
assert_false "and the agent was not asked for it" grep -q shop.acme.test "$OD/asked"

# An uncovered name: the agent is asked, the handshake waits for the certificate.
started=$(date +%s%N)
https_get ondemand.acme.test / "$OD_HTTPS" >"$OD/ondemand.out" &
held_curl=$!
assert_true "the name arrives on certificate.sock" wait_until 10 grep -qx ondemand.acme.test "$OD/asked"
managed_cert "$OD/acme/certs" ondemand.acme.test "DNS:ondemand.acme.test" 24577
kill -HUP "$OD_PROXY"
wait "$held_curl" || true
took=$((($(date +%s%N) - started) / 1000000))
assert_eq "app ondemand.acme.test /" "$(cat "$OD/ondemand.out")" \
    "the held handshake gets the certificate written meanwhile (verified, ${took} ms)"
assert_eq 1 "$(grep -cx ondemand.acme.test "$OD/asked")" "the name was sent once"
assert_contains "$(cat "$OD/proxy.log")" "certificate for ondemand.acme.test arrived" "the proxy logs why it went on"
# acme-tls/1 is never held (the validation of the name being issued).
started=$(date +%s%N)
openssl s_client -connect "127.0.0.1:$OD_HTTPS" -servername other.acme.test -alpn acme-tls/1 </dev/null >/dev/null 2>&1 || true
took=$((($(date +%s%N) - started) / 1000000))
assert_true "an acme-tls/1 ClientHello is not held (${took} ms)" test "$took" -lt 3000
assert_false "nor asked for" grep -q other.acme.test "$OD/asked"

# SIGTERM while a handshake is held: the proxy does not wait for it.
https_get held.acme.test / "$OD_HTTPS" >"$OD/held.out" &
held_curl=$!
assert_true "held.acme.test is asked for" wait_until 10 grep -qx held.acme.test "$OD/asked"
started=$(date +%s%N)
kill -TERM "$OD_PROXY"
assert_true "the proxy exits within 5 s of SIGTERM with a handshake held" \
    wait_until 5 bash -c "! kill -0 $OD_PROXY 2>/dev/null"
took=$((($(date +%s%N) - started) / 1000000))
log "exited $took ms after SIGTERM"
wait "$held_curl" || true
assert_not_contains "$(cat "$OD/held.out")" "app held" "the held connection got no answer"

kill -TERM "$PROXY"
assert_true "the first proxy exits on SIGTERM" wait_until 5 bash -c "! kill -0 $PROXY 2>/dev/null"
log "all $CHECKS checks passed"
