#!/usr/bin/env bash
# HTTPS in deploy-proxy, configured in agent.toml: SNI picks the certificate of
# each domain, X-Forwarded-Proto tells the app, plain HTTP is redirected (ACME
# challenges excepted), a redeploy under HTTPS load fails no request, renewed
# certificate files are picked up without a restart (a broken renewal keeps the
# previous ones), a killed proxy comes back on the same HTTPS socket, a changed
# config replaces the running proxy, and a bad config stops the agent before it
# changes anything.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v openssl >/dev/null || fail "openssl is needed (scripts/deps installs it)"
command -v wrk >/dev/null || fail "wrk is needed (scripts/deps installs it)"

make_test_ca "$TEST_TMP/pki"
issue_cert shop "DNS:shop.tls.test,DNS:*.shop.tls.test" 1001
issue_cert blog "DNS:blog.tls.test" 2001

HTTPS_PORT=$(free_port)
CONF=$TEST_TMP/agent.toml
write_agent_toml() { # REDIRECT
    cat >"$CONF" <<EOF
# deploy-agent settings for this test; certificate paths are relative to this file
[proxy]
https_listen = "127.0.0.1:$HTTPS_PORT"
redirect_https = $1

[[proxy.certificates]]
cert = "pki/shop.crt"
key = "pki/shop.key"

[[proxy.certificates]]
cert = "$PKI/blog.crt"
key = "$PKI/blog.key"
EOF
}
write_agent_toml true
AGENT_EXTRA_ARGS=(--config "$CONF")
start_agent
assert_contains "$(cat "${IT_AGENT_LOGS[-1]}")" "https://127.0.0.1:$HTTPS_PORT" \
    "the agent says where HTTPS is served"
assert_exit 0 "$DEPLOYCTL_BIN" --host "$AGENT_URL" agent info --json
assert_jq "$OUT" ".proxy_https_listen == \"127.0.0.1:$HTTPS_PORT\"" "agent info reports the HTTPS address"

# Apps that show what the proxy told them: a CGI script prints X-Forwarded-Proto.
TLS_BUILD=$DEFAULT_BUILD' && cp -r cgi-bin public/ && chmod +x public/cgi-bin/fwd'
FWD_CGI='#!/bin/sh
printf "Content-Type: text/plain\r\n\r\nproto=%s\n" "$HTTP_X_FORWARDED_PROTO"'
make_app_repo shop build="$TLS_BUILD" domains='"shop.tls.test", "www.shop.tls.test"' drain=2s
commit_change "$REPO" "CGI" cgi-bin/fwd "$FWD_CGI"
SHOP_REPO=$REPO
assert_exit 0 dctl deploy
make_app_repo blog build="$TLS_BUILD" domains='"blog.tls.test"'
commit_change "$REPO" "CGI" cgi-bin/fwd "$FWD_CGI"
BLOG_REPO=$REPO
assert_exit 0 dctl deploy

# https_get NAME PATH: body over HTTPS with the name resolved to 127.0.0.1,
# verified against the test CA (so the certificate must cover NAME).
https_get() {
    curl -sS --max-time 5 --cacert "$PKI/ca.pem" --resolve "$1:$HTTPS_PORT:127.0.0.1" \
        "https://$1:$HTTPS_PORT${2:-/}" 2>&1 || true
}
# served_serial NAME: serial of the certificate the proxy presents for NAME (SNI).
served_serial() {
    openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$1" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}

assert_eq "hello from 1" "$(https_get shop.tls.test)" "shop.tls.test over HTTPS, verified"
assert_eq "hello from 1" "$(https_get www.shop.tls.test)" "www.shop.tls.test: the wildcard certificate"
assert_eq "hello from 1" "$(https_get blog.tls.test)" "blog.tls.test over HTTPS with its own certificate"
assert_eq "03E9" "$(served_serial shop.tls.test)" "SNI shop.tls.test gets the shop certificate (serial 1001)"
assert_eq "07D1" "$(served_serial blog.tls.test)" "SNI blog.tls.test gets the blog certificate (serial 2001)"
assert_eq "03E9" "$(served_serial other.test)" "an unknown name gets the first (default) certificate"
assert_eq "proto=https" "$(https_get shop.tls.test /cgi-bin/fwd)" \
    "the app sees X-Forwarded-Proto https"
# A connection the proxy ends (the client asked Connection: close) ends with close_notify:
# a client reading to the end of the connection tells the end from a cut (Python's ssl with
# ragged EOFs not suppressed raises SSLEOFError on a bare TCP close).
close_notify() { # HTTP_VERSION [CONNECTION_HEADER]
    python3 - "$HTTPS_PORT" "$PKI/ca.pem" "$1" "$2" <<'PY'
import socket, ssl, sys
port, ca, version, connection = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
extra = f"Connection: {connection}\r\n" if connection else ""
context = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port), timeout=5)
conn = context.wrap_socket(raw, server_hostname="shop.tls.test", suppress_ragged_eofs=False)
conn.sendall(f"GET / {version}\r\nHost: shop.tls.test\r\n{extra}\r\n".encode())
data = b""
try:
    while chunk := conn.recv(65536):
        data += chunk
    print("close_notify" if data.endswith(b"hello from 1\n") else "answer: " + repr(data[-80:]))
except ssl.SSLEOFError as e:
    print("no close_notify after " + repr(data[-40:]) + ": " + str(e))
PY
}
assert_eq "close_notify" "$(close_notify HTTP/1.1 close)" \
    "HTTP/1.1 with Connection: close: the answer, then close_notify"
assert_eq "close_notify" "$(close_notify HTTP/1.0 "")" "HTTP/1.0: the answer, then close_notify"
assert_eq "proto=http" "$(fetch shop /cgi-bin/fwd)" \
    "and http over plain HTTP (shop.localhost is not redirected: no certificate covers it)"

# Plain HTTP to a covered name: 308 to the same URL on https.
headers=$(curl -sS -o /dev/null -D - --max-time 5 -H "Host: shop.tls.test" \
    "http://127.0.0.1:$PROXY_PORT/a/b?x=1" | tr -d '\r')
assert_contains "$headers" "HTTP/1.1 308" "plain HTTP to shop.tls.test is redirected (308)"
assert_contains "$headers" "Location: https://shop.tls.test:$HTTPS_PORT/a/b?x=1" \
    "to the same path and query on https"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: shop.tls.test" \
    "http://127.0.0.1:$PROXY_PORT/.well-known/acme-challenge/token")
assert_eq 404 "$code" "an ACME http-01 challenge path is not redirected (the app answers it)"

# A redeploy under HTTPS load: every request answered 2xx, no socket error.
commit_change "$SHOP_REPO" "v2" VERSION 2
REPO=$SHOP_REPO
wrk -t1 -c8 -d6s --timeout 5s -H "Host: shop.tls.test" "https://127.0.0.1:$HTTPS_PORT/" \
    >"$TEST_TMP/wrk.out" 2>&1 &
wrk_pid=$!
sleep 1
assert_exit 0 dctl deploy
wait "$wrk_pid" || true
sed 's/^/    /' "$TEST_TMP/wrk.out"
assert_match "$(awk '/requests in/ {print $1}' "$TEST_TMP/wrk.out")" '^[1-9][0-9]+$' "wrk got HTTPS answers"
assert_not_contains "$(cat "$TEST_TMP/wrk.out")" "Non-2xx" "no non-2xx answer during the redeploy"
assert_not_contains "$(cat "$TEST_TMP/wrk.out")" "Socket errors" "no socket error during the redeploy"
assert_eq "hello from 2" "$(https_get shop.tls.test)" "v2 served over HTTPS"

# Renewal: new files are picked up by new connections, no restart.
proxy_before=$(proxy_pid)
issue_cert blog "DNS:blog.tls.test" 2002
assert_true "the renewed blog certificate is served within 3 s" \
    wait_until 3 bash -c "[[ \$(openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername blog.tls.test </dev/null 2>/dev/null | openssl x509 -noout -serial) == serial=07D2 ]]"
assert_eq "$proxy_before" "$(proxy_pid)" "the same proxy process (no restart)"
assert_eq "hello from 1" "$(https_get blog.tls.test)" "blog still verified over HTTPS"
PROXY_LOG=$DATA/proxy/proxy.log
[[ -f $PROXY_LOG ]] || PROXY_LOG=$(ls "$DATA"/proxy/*.log | head -1)
assert_contains "$(cat "$PROXY_LOG")" "certificate reloaded" "the proxy logged the reload"

# A broken renewal (a key that is not the certificate's) keeps the previous set. The
# proxy may read the file half-written (cp truncates first) and refuse it as not PEM,
# then the whole file: the reason to check is the last one.
cp "$PKI/shop.key" "$PKI/blog.key"
assert_true "the proxy refuses the broken set within 3 s" \
    wait_until 3 grep -q "certificates not reloaded.*does not belong to the certificate" "$PROXY_LOG"
assert_contains "$(grep "certificates not reloaded" "$PROXY_LOG" | tail -1)" "does not belong to the certificate" \
    "and says why"
assert_eq "07D2" "$(served_serial blog.tls.test)" "blog keeps its last good certificate"
assert_eq "hello from 1" "$(https_get blog.tls.test)" "and is served over HTTPS"
issue_cert blog "DNS:blog.tls.test" 2003
assert_true "a fixed renewal is picked up" \
    wait_until 3 bash -c "[[ \$(openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername blog.tls.test </dev/null 2>/dev/null | openssl x509 -noout -serial) == serial=07D3 ]]"

# The proxy killed -9: the agent restarts it on the HTTPS socket it holds.
before=$(proxy_pid)
kill -9 "$before"
assert_true "a new proxy runs within 3 s" wait_until 3 bash -c "p=\$(cat '$DATA/proxy/proxy.pid' 2>/dev/null); [[ -n \$p && \$p != $before ]] && kill -0 \$p"
assert_eq "hello from 2" "$(https_get shop.tls.test)" "HTTPS served by the new proxy"

# Restarted with redirect_https = false: the running proxy is replaced by one
# with the new settings, on the same sockets.
write_agent_toml false
kill_agent -9
old_proxy=$(proxy_pid)
restart_agent
assert_contains "$(cat "${IT_AGENT_LOGS[-1]}")" "listening socket on 127.0.0.1:$HTTPS_PORT" \
    "the restarted agent took the running proxy's HTTPS socket"
assert_contains "$(cat "${IT_AGENT_LOGS[-1]}")" "with other settings; replacing it" \
    "the restarted agent replaces a proxy with other settings"
assert_true "the old proxy exits" wait_until 12 bash -c "! kill -0 $old_proxy 2>/dev/null"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: shop.tls.test" "http://127.0.0.1:$PROXY_PORT/")
assert_eq 200 "$code" "plain HTTP to shop.tls.test is served, no longer redirected"
assert_eq "hello from 2" "$(https_get shop.tls.test)" "HTTPS still served"

# Bad configurations stop the agent at once, with the file, and touch nothing.
BAD_DATA=$TEST_TMP/bad-data
bad_config() { # WHAT EXPECTED-MESSAGE: agent.toml in $TEST_TMP/bad.toml
    assert_exit 2 timeout 20 "$AGENT_BIN" serve --config "$TEST_TMP/bad.toml" --data-dir "$BAD_DATA" --socket "" \
        --listen "127.0.0.1:$(free_port)" --proxy-listen "127.0.0.1:$(free_port)" --engine process \
        --proxy-bin "$PROXY_BIN"
    assert_contains "$ERR" "$2" "$1: says so"
    assert_false "$1: no data directory was created" test -e "$BAD_DATA"
}
printf '[proxy]\n[[proxy.certificates]]\ncert = "%s"\nkey = "%s"\n' "$PKI/shop.crt" "$PKI/blog.key" >"$TEST_TMP/bad.toml"
bad_config "a key that is not the certificate's" "does not belong to the certificate"
printf '[proxy]\n[[proxy.certificates]]\ncert = "%s"\nkey = "%s"\n' "$PKI/missing.crt" "$PKI/shop.key" >"$TEST_TMP/bad.toml"
bad_config "a missing certificate file" "cannot read the TLS certificate $PKI/missing.crt"
printf '[proxy]\nredirect_http = true\n' >"$TEST_TMP/bad.toml"
bad_config "a misspelt key" "did you mean 'redirect_https'?"
assert_contains "$ERR" "bad.toml:2:1" "the error names the file, line and column"

log "all $CHECKS checks passed"
