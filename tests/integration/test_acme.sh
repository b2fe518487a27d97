#!/usr/bin/env bash
# [acme]: certificates by themselves, against a real Pebble (Let's Encrypt's ACME test
# server) and pebble-challtestsrv (its DNS server, answering 127.0.0.1 for every name):
# an ACME server that is down leaves a deployed domain on plain HTTP with a warning and the
# next attempt succeeds once it is up; a deploy gets a certificate that chains to Pebble's
# root (HTTP-01, then TLS-ALPN-01, both answered by deploy-proxy); a restart re-issues
# nothing; a wildcard through DNS-01 and a hook talking to challtestsrv; renewal of a
# short-lived certificate under wrk load (a new TLS handshake per request) with 0 failed
# requests; on-demand issuance allowed by the ask URL and refused when it answers 403;
# deployctl certs, status and the metrics; a CA requiring external account binding.
source "$(dirname "$0")/lib.sh"
require_binaries
require_tools pebble pebble pebble-challtestsrv
command -v wrk >/dev/null || fail "wrk is needed (scripts/deps installs it)"

make_test_ca "$TEST_TMP/pki"
issue_cert pebble "DNS:localhost,IP:127.0.0.1"
PEBBLE_PORT=$(free_port)
PEBBLE_MGMT=$(free_port)
DNS_PORT=$(free_port)
CHALL_MGMT=$(free_port)
HTTPS_PORT=$(free_port)
ASK_PORT=$(free_port)
PEBBLE_PID=""
CHALL_PID=""
# await SECONDS DESCRIPTION CMD...: a check that passes once CMD succeeds within SECONDS.
await() {
    local seconds=$1 what=$2
    shift 2
    if wait_until "$seconds" "$@"; then pass "$what"; else fail "$what (within $seconds s)"; fi
}
ASK_PID=""

# start_pebble HTTP_PORT [VALIDITY_SECONDS] [EAB]: Pebble validating HTTP-01 on HTTP_PORT and
# TLS-ALPN-01 on HTTPS_PORT (deploy-proxy's), names resolved by challtestsrv; with EAB set,
# external account binding is required (key id "kid-1", MAC key $EAB_KEY).
EAB_KEY=zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W
start_pebble() {
    local validity=${2:-} eab=""
    [[ -n ${3:-} ]] && eab=", \"externalAccountBindingRequired\": true, \"externalAccountMACKeys\": {\"kid-1\": \"$EAB_KEY\"}"
    cat >"$TEST_TMP/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$PEBBLE_PORT", "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT",
  "certificate": "$PKI/pebble.crt", "privateKey": "$PKI/pebble.key",
  "httpPort": $1, "tlsPort": $HTTPS_PORT, "ocspResponderURL": "",
  "externalAccountBindingRequired": false${validity:+, \"certificateValidityPeriod\": $validity}$eab}}
EOF
    PEBBLE_VA_NOSLEEP=1 pebble -config "$TEST_TMP/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" \
        >>"$TEST_TMP/pebble.log" 2>&1 &
    PEBBLE_PID=$!
    await 10 "Pebble answers its directory" \
        curl -fs --cacert "$PKI/ca.pem" -o /dev/null "https://127.0.0.1:$PEBBLE_PORT/dir"
    # The root Pebble made for this run (it changes at each start).
    curl -fsS --cacert "$PKI/ca.pem" "https://127.0.0.1:$PEBBLE_MGMT/roots/0" >"$TEST_TMP/root.pem"
    assert_contains "$(cat "$TEST_TMP/root.pem")" "BEGIN CERTIFICATE" "Pebble's management API gives its root"
}
stop_pebble() {
    if [[ -n $PEBBLE_PID ]]; then
        kill "$PEBBLE_PID" 2>/dev/null || true
        wait "$PEBBLE_PID" 2>/dev/null || true # 143: it ended on the TERM
    fi
    PEBBLE_PID=""
    return 0
}
cleanup() {
    stop_pebble
    for pid in "$CHALL_PID" "$ASK_PID"; do [[ -n $pid ]] && kill "$pid" 2>/dev/null; done
    return 0
}
at_exit cleanup

pebble-challtestsrv -management "127.0.0.1:$CHALL_MGMT" -dns01 "127.0.0.1:$DNS_PORT" \
    -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    >"$TEST_TMP/challtestsrv.log" 2>&1 &
CHALL_PID=$!
await 10 "pebble-challtestsrv listens" \
    curl -fsS -o /dev/null -X POST -d '{"ip":"127.0.0.1"}' "http://127.0.0.1:$CHALL_MGMT/set-default-ipv4"

# The DNS-01 hook: publishes and removes the TXT record through challtestsrv's API.
HOOK=$TEST_TMP/dns-hook
cat >"$HOOK" <<EOF
#!/bin/sh
# dns-hook add|remove NAME VALUE
echo "\$1 \$2" >>"$TEST_TMP/hook.calls"
case \$1 in
add) curl -fsS -X POST -d "{\"host\":\"\$2.\",\"value\":\"\$3\"}" http://127.0.0.1:$CHALL_MGMT/set-txt ;;
remove) curl -fsS -X POST -d "{\"host\":\"\$2.\"}" http://127.0.0.1:$CHALL_MGMT/clear-txt ;;
*) exit 2 ;;
esac
EOF
chmod +x "$HOOK"

# The ask endpoint of on-demand TLS: 200 for allowed.acme.test only, 403 otherwise.
cat >"$TEST_TMP/ask.py" <<'EOF'
import http.server, sys, urllib.parse
class Ask(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        name = query.get("domain", [""])[0]
        with open(sys.argv[2], "a") as log:
            log.write(name + "\n")
        self.send_response(200 if name == "allowed.acme.test" else 403)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ask).serve_forever()
EOF
python3 "$TEST_TMP/ask.py" "$ASK_PORT" "$TEST_TMP/ask.calls" >"$TEST_TMP/ask.log" 2>&1 &
ASK_PID=$!

CONF=$TEST_TMP/agent.toml
write_agent_toml() { # CHALLENGES
    cat >"$CONF" <<EOF
[proxy]
https_listen = "127.0.0.1:$HTTPS_PORT"

[acme]
directory = "https://127.0.0.1:$PEBBLE_PORT/dir"
ca_file = "pki/ca.pem"
email = "ops@acme.test"
challenges = [$1]
dns_hook = "$HOOK"
retry = "2s"
on_demand = true
ask = "http://127.0.0.1:$ASK_PORT/allowed"
EOF
}
write_agent_toml '"http-01"'
AGENT_EXTRA_ARGS=(--config "$CONF")
start_agent

# https_code NAME [CA]: the HTTP status over HTTPS with NAME resolved to 127.0.0.1, the
# certificate verified against Pebble's root; 000 when the handshake or verification fails.
https_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 30 --cacert "${2:-$TEST_TMP/root.pem}" \
        --resolve "$1:$HTTPS_PORT:127.0.0.1" "https://$1:$HTTPS_PORT/" || true
}
serial_of() {
    openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$1" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null
}
cert_field() { # NAME FIELD
    "$DEPLOYCTL_BIN" --host "$AGENT_URL" certs --json |
        jq -r --arg n "$1" ".certificates[] | select(.name == \$n) | .$2"
}

# --- 1. The ACME server is down: the deploy goes live over HTTP, with a warning. ------------
make_app_repo shop domains='"shop.acme.test"'
SHOP_REPO=$REPO
assert_exit 0 dctl deploy
assert_contains "$OUT" "warning: no certificate for shop.acme.test" "the deploy warns that the name has no certificate"
assert_contains "$OUT" "cannot reach the ACME server" "... and says why (the server is down)"
assert_contains "$OUT" "served over plain HTTP" "... and that it is served over plain HTTP meanwhile"
assert_eq "hello from 1" "$(curl -fsS --max-time 5 -H 'Host: shop.acme.test' "http://127.0.0.1:$PROXY_PORT/")" \
    "the app serves over plain HTTP"
assert_exit 0 "$DEPLOYCTL_BIN" --host "$AGENT_URL" certs --json
assert_jq "$OUT" '.certificates[] | select(.name == "shop.acme.test") | .state == "failed" and (.last_error | test("cannot reach")) and .next_attempt != null' \
    "deployctl certs --json: failed, the last error and the next attempt"
assert_exit 0 "$DEPLOYCTL_BIN" --host "$AGENT_URL" --no-color certs
assert_contains "$OUT" "shop.acme.test" "deployctl certs lists the name"
assert_contains "$OUT" "last error: cannot reach the ACME server" "... with its last error"
assert_contains "$(cat "$AGENT_LOG")" "acme: no certificate for shop.acme.test" "the agent log has the warning"
assert_exit 0 dctl status
assert_contains "$OUT" "warning: certificate for shop.acme.test failed: cannot reach the ACME server" \
    "deployctl status warns about the missing certificate"
assert_contains "$OUT" "served over plain HTTP meanwhile" "... and says how the name is served"

# --- 2. Pebble comes up: the next attempt (retry = 2s, doubling) issues it. ------------------
start_pebble "$PROXY_PORT"
await 40 "the next attempt issues shop.acme.test once Pebble is up" \
    bash -c "[[ \$('$DEPLOYCTL_BIN' --host '$AGENT_URL' certs --json | jq -r '.certificates[] | select(.name == \"shop.acme.test\") | .state') == valid ]]"
await 5 "https://shop.acme.test answers with a certificate chaining to Pebble's root" \
    bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --cacert '$TEST_TMP/root.pem' --resolve 'shop.acme.test:$HTTPS_PORT:127.0.0.1' https://shop.acme.test:$HTTPS_PORT/) == 200 ]]"
assert_eq "hello from 1" "$(curl -fsS --cacert "$TEST_TMP/root.pem" --resolve "shop.acme.test:$HTTPS_PORT:127.0.0.1" https://shop.acme.test:$HTTPS_PORT/)" \
    "the app's page over HTTPS"
assert_eq "000" "$(https_code shop.acme.test "$PKI/ca.pem")" "the same request trusting only another CA fails (the check can fail)"
assert_match "$(cert_field shop.acme.test issuer)" "Pebble" "the issuer is Pebble's intermediate"
assert_eq "null" "$(cert_field shop.acme.test last_error)" "the last error is cleared"
REPO=$SHOP_REPO assert_exit 0 dctl status --json
assert_jq "$OUT" '.certificates == [{"name":"shop.acme.test","state":"valid","not_after":.certificates[0].not_after,"last_error":null}] and (.certificates[0].not_after | test("^20[0-9][0-9]-"))' \
    "deployctl status --json: the domain's certificate is valid"
[[ $(stat -c %a "$DATA/acme/account.key") == 600 ]] && pass "the account key is 0600" || fail "the account key is 0600"

# --- 3. A deploy with Pebble up: the certificate comes with the deploy (HTTP-01). -----------
make_app_repo blog domains='"blog.acme.test"'
started=$(date +%s%N)
assert_exit 0 dctl deploy
assert_contains "$OUT" "https://blog.acme.test: certificate issued by Pebble" "the deploy's output says the certificate was issued"
assert_eq "200" "$(https_code blog.acme.test)" "blog.acme.test answers over HTTPS right after its deploy"
DEPLOY_TO_HTTPS_MS=$((($(date +%s%N) - started) / 1000000))
pass "from deploy to a valid certificate served: ${DEPLOY_TO_HTTPS_MS} ms (deploy included)"
assert_eq "" "$(ls "$DATA/acme/http-01")" "the HTTP-01 answers are removed once validated"
assert_contains "$(cat "$TEST_TMP/pebble.log")" "validate w/ HTTP: http://blog.acme.test:$PROXY_PORT/.well-known/acme-challenge/" \
    "Pebble fetched the HTTP-01 answer from deploy-proxy"

# --- 4. A restart issues nothing again; TLS-ALPN-01 answered by deploy-proxy. ----------------
shop_serial=$(serial_of shop.acme.test)
kill_agent
write_agent_toml '"tls-alpn-01"'
restart_agent
assert_eq "$shop_serial" "$(serial_of shop.acme.test)" "after a restart shop.acme.test keeps its certificate"
assert_not_contains "$(cat "$AGENT_LOG")" "requesting a certificate for shop.acme.test" "... and the restarted agent asked for none"
make_app_repo alpn domains='"alpn.acme.test"'
assert_exit 0 dctl deploy
assert_contains "$OUT" "https://alpn.acme.test: certificate issued by Pebble" "TLS-ALPN-01: alpn.acme.test issued during its deploy"
assert_eq "200" "$(https_code alpn.acme.test)" "... and served over HTTPS"
assert_contains "$(cat "$AGENT_LOG")" "acme: alpn.acme.test: tls-alpn-01 challenge ready" "the agent answered tls-alpn-01"
assert_not_contains "$(cat "$TEST_TMP/pebble.log")" "validate w/ HTTP: http://alpn.acme.test" "... and Pebble did not use HTTP-01 for it"
assert_contains "$(cat "$DATA/proxy/proxy.log")" "TLS-ALPN-01 challenge for alpn.acme.test" "deploy-proxy loaded the challenge certificate"
assert_eq "" "$(ls "$DATA/acme/tls-alpn-01")" "the challenge certificate is removed once validated"

# --- 5. A wildcard through DNS-01 and the hook. ------------------------------------------------
make_app_repo wild domains='"*.wild.acme.test"'
assert_exit 0 dctl deploy
assert_contains "$OUT" "https://*.wild.acme.test: certificate issued by Pebble" "DNS-01: the wildcard is issued during its deploy"
assert_eq "add _acme-challenge.wild.acme.test
remove _acme-challenge.wild.acme.test" "$(cat "$TEST_TMP/hook.calls")" "the hook added the TXT record, then removed it"
assert_eq "200" "$(https_code a.wild.acme.test)" "a.wild.acme.test answers over HTTPS with the wildcard"
assert_eq "hello from 1" "$(curl -fsS --cacert "$TEST_TMP/root.pem" --resolve "b.wild.acme.test:$HTTPS_PORT:127.0.0.1" https://b.wild.acme.test:$HTTPS_PORT/)" \
    "b.wild.acme.test is routed to the app by its wildcard domain"

# --- 6. On-demand: allowed by the ask URL, refused when it answers 403. ------------------------
assert_eq "404" "$(https_code allowed.acme.test)" "on-demand: the handshake for allowed.acme.test is held until its certificate is issued (then 404: no app)"
assert_match "$(cat "$TEST_TMP/ask.calls")" "allowed.acme.test" "... the ask URL was asked about it"
assert_eq "true" "$(cert_field allowed.acme.test on_demand)" "deployctl certs marks it on-demand"
assert_eq "000" "$(https_code denied.acme.test)" "on-demand: denied.acme.test gets no certificate (ask answered 403)"
assert_match "$(cat "$TEST_TMP/ask.calls")" "denied.acme.test" "... after the ask URL was asked"
assert_eq "" "$(cert_field denied.acme.test name)" "... and it is not in the list"
assert_contains "$(cat "$AGENT_LOG")" "on-demand certificate for denied.acme.test refused" "the agent log says it was refused"

# --- 7. Metrics. ---------------------------------------------------------------------------------
METRICS_PORT=$(free_port)
kill_agent
AGENT_EXTRA_ARGS=(--config "$CONF" --metrics-listen "127.0.0.1:$METRICS_PORT")
restart_agent
metrics=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics")
assert_match "$metrics" 'deploy_acme_certificate_expiry_timestamp_seconds\{name="shop.acme.test"\} [1-9][0-9]{9}' \
    "metrics: the certificate's expiry"
assert_match "$metrics" 'deploy_acme_issuance_failures_total\{name="shop.acme.test"\} [1-9]' \
    "metrics: the failures while Pebble was down"

# --- 8. Renewal of a short-lived certificate under load: 0 failed requests. ---------------------
stop_pebble
start_pebble "$PROXY_PORT" 12
make_app_repo renew domains='"renew.acme.test"'
assert_exit 0 dctl deploy
assert_contains "$OUT" "https://renew.acme.test: certificate issued by Pebble" "a certificate valid for 12 s"
first_serial=$(serial_of renew.acme.test)
cat >"$TEST_TMP/close.lua" <<'EOF'
wrk.headers["Connection"] = "close"
EOF
# wrk sends the URL's name as SNI: in a mount namespace of its own, /etc/hosts says
# renew.acme.test is 127.0.0.1. wrk checks no certificate: the serials say which it got.
printf '127.0.0.1 renew.acme.test\n' >"$TEST_TMP/hosts"
unshare -m bash -c "mount --bind '$TEST_TMP/hosts' /etc/hosts && exec wrk -t1 -c4 -d11s -s '$TEST_TMP/close.lua' https://renew.acme.test:$HTTPS_PORT/" \
    >"$TEST_TMP/wrk.out" 2>&1 &
WRK_PID=$!
await 15 "the certificate is renewed at two thirds of its lifetime, under load" \
    bash -c "[[ -n \$(openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername renew.acme.test </dev/null 2>/dev/null | openssl x509 -noout -serial) && \$(openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername renew.acme.test </dev/null 2>/dev/null | openssl x509 -noout -serial) != '$first_serial' ]]"
expect_wrk_clean "$WRK_PID" "$TEST_TMP/wrk.out" "with a new TLS handshake each, through the renewal"
assert_eq "200" "$(https_code renew.acme.test)" "the renewed certificate verifies against Pebble's root"
assert_jq "$("$DEPLOYCTL_BIN" --host "$AGENT_URL" certs --json)" \
    '.certificates[] | select(.name == "renew.acme.test") | .last_renewal != null and .renew_at != null' \
    "deployctl certs shows the last renewal and the next one"

# --- 9. A CA that requires external account binding: refused without it, issued with it. -------
kill_agent
stop_pebble
HTTPS_PORT=$(free_port)
CONF=$TEST_TMP/agent-eab.toml
write_agent_toml '"http-01"'
AGENT_EXTRA_ARGS=(--config "$CONF")
start_agent eab
start_pebble "$PROXY_PORT" "" eab
make_app_repo noeab domains='"noeab.acme.test"'
assert_exit 0 dctl deploy
assert_contains "$OUT" "warning: no certificate for noeab.acme.test" "without EAB the deploy warns..."
assert_contains "$OUT" "requires external account binding: set [acme] eab_kid and eab_hmac_key" "... that the CA wants external account binding"
kill_agent
printf 'eab_kid = "kid-1"\neab_hmac_key = "%s"\n' "$EAB_KEY" >>"$CONF"
restart_agent eab
make_app_repo eab domains='"eab.acme.test"'
assert_exit 0 dctl deploy
assert_contains "$OUT" "https://eab.acme.test: certificate issued by Pebble" "with eab_kid and eab_hmac_key the account is bound and the name issued"
assert_eq "200" "$(https_code eab.acme.test)" "... and served over HTTPS"
