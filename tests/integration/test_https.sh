#!/usr/bin/env bash
# The agent's API over HTTPS, and deployctl's check of the agent's certificate:
# deploy, status, logs -f and rollback over https:// with a CA file and with a
# pinned fingerprint (self-signed); a wrong pin or an unknown CA stops before
# anything is sent (exit 3); plain HTTP to the TLS port gets nothing and a
# client that never handshakes holds nobody up; a renewed certificate is
# picked up without a restart (a broken renewal keeps the previous one);
# plain HTTP is refused off loopback on both sides (exit 2, nothing bound, no
# connection made); a key of another certificate stops the agent at start.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v openssl >/dev/null || fail "openssl is needed (scripts/deps installs it)"

# A test CA and the agent's certificates it signs, for 127.0.0.1 (an IP SAN, no DNS name).
make_test_ca "$TEST_TMP/pki"
issue_cert agent IP:127.0.0.1 1001
issue_cert renewed IP:127.0.0.1 1002
# A self-signed certificate, which only a pin can accept.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=self-signed agent" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$PKI/self.key" -out "$PKI/self.crt" 2>/dev/null || fail "make the self-signed certificate"
# "sha256 Fingerprint=AB:CD:..." as openssl prints it, and deploy.toml's canonical form.
openssl_fp() { openssl x509 -noout -fingerprint -sha256 -in "$1"; }
canonical_fp() { openssl_fp "$1" | sed 's/^[^=]*=/sha256:/'; }

# ---------------------------------------------------------------- refusals at start
# Plain HTTP off loopback: exit 2 before anything is bound or written.
PORT0=$(free_port)
assert_exit 2 "$AGENT_BIN" serve --data-dir "$TEST_TMP/refused" --listen "0.0.0.0:$PORT0" \
    --socket "" --engine process --proxy-listen "127.0.0.1:$(free_port)"
assert_contains "$ERR" "plain HTTP is only allowed on a loopback address" "serve 0.0.0.0 without TLS: says why"
assert_contains "$ERR" "tls_cert and tls_key" "serve 0.0.0.0 without TLS: says to configure tls_cert/tls_key"
assert_contains "$ERR" "SSH" "serve 0.0.0.0 without TLS: or to use the unix socket with SSH"
assert_false "serve 0.0.0.0 without TLS: nothing listens on :$PORT0" port_in_use "$PORT0"
assert_false "serve 0.0.0.0 without TLS: no data dir was made" test -e "$TEST_TMP/refused"

# A key that belongs to another certificate: exit 2 with both files named.
assert_exit 2 "$AGENT_BIN" serve --data-dir "$TEST_TMP/refused" --listen "127.0.0.1:$PORT0" \
    --socket "" --engine process --tls-cert "$PKI/agent.crt" --tls-key "$PKI/self.key"
assert_contains "$ERR" "the TLS key $PKI/self.key does not belong to the certificate $PKI/agent.crt" \
    "mismatched cert and key: a clear error"
assert_false "mismatched cert and key: no data dir was made" test -e "$TEST_TMP/refused"
assert_exit 2 "$AGENT_BIN" serve --data-dir "$TEST_TMP/refused" --listen "127.0.0.1:$PORT0" \
    --socket "" --tls-cert "$PKI/agent.crt"
assert_contains "$ERR" "--tls-key" "--tls-cert alone: says --tls-key is needed"

# deployctl: plain http:// to a name that is not loopback is refused before any
# connection or DNS lookup (.invalid never resolves; the refusal is immediate).
assert_exit 2 "$DEPLOYCTL_BIN" --host http://agent.invalid:7070 agent ping
assert_contains "$ERR" "plain HTTP is only allowed to loopback; use https:// or ssh://" \
    "deployctl http://agent.invalid: refused"
assert_not_contains "$ERR" "cannot reach" "deployctl http://agent.invalid: no connection was tried"

# ---------------------------------------------------------------- HTTPS with a CA file
cp "$PKI/agent.crt" "$PKI/live.crt"
cp "$PKI/agent.key" "$PKI/live.key"
AGENT_EXTRA_ARGS=(--tls-cert "$PKI/live.crt" --tls-key "$PKI/live.key")
start_agent
assert_eq "https://127.0.0.1:$AGENT_PORT" "$AGENT_URL" "the agent serves https"
AGENT_FP=$(canonical_fp "$PKI/agent.crt")
assert_contains "$(cat "$AGENT_LOG")" "$(openssl_fp "$PKI/agent.crt")" \
    "the agent logs its certificate's fingerprint as openssl prints it"
assert_contains "$(cat "$AGENT_LOG")" "deploy-agent ready: api https://127.0.0.1:$AGENT_PORT" \
    "the ready line says https"
# The unix socket is unchanged: plain HTTP, for local users and SSH.
assert_eq ok "$(curl -s --unix-socket "$AGENT_SOCKET" http://agent/v1/health | jq -r .status)" \
    "the unix socket still serves plain HTTP"

make_app_repo web run='exec busybox httpd -f -vv -p 127.0.0.1:$PORT -h public' # logs requests
printf 'ca_file = "../../pki/ca.pem"\n' >>"$REPO/deploy.toml" # relative to deploy.toml's folder
commit_change "$REPO" "verify the agent with the test CA"
assert_exit 0 dctl deploy
assert_contains "$OUT" "v1" "deploy over https with ca_file"
expect_serving web "hello from 1" "v1 is served"
assert_exit 0 dctl status
assert_contains "$OUT" "v1" "status over https"
assert_exit 0 dctl agent info --json
assert_jq "$OUT" ".tls_fingerprint == \"$AGENT_FP\"" "agent info --json shows the API certificate's fingerprint"
assert_exit 0 dctl agent info
assert_contains "$OUT" "$AGENT_FP" "agent info shows the fingerprint"

# logs -f streams over TLS: existing lines first, then a line made afterwards.
FOLLOW=$TEST_TMP/follow.out
dctl logs -f >"$FOLLOW" 2>"$TEST_TMP/follow.err" &
follow_pid=$!
has_build_line() { grep -q "building 1" "$FOLLOW"; }
wait_until 5 has_build_line && pass "logs -f over https: prints the build output" ||
    fail "logs -f over https: prints the build output" "$(excerpt "$FOLLOW")" "$(excerpt "$TEST_TMP/follow.err")"
marker=marker-$RANDOM$RANDOM
assert_eq 404 "$(fetch_code web "/$marker")" "a request for /$marker reaches the app"
has_marker() { grep -q "$marker" "$FOLLOW"; }
wait_until 5 has_marker && pass "logs -f over https: a new app line arrives" ||
    fail "logs -f over https: a new app line arrives" "$(excerpt "$FOLLOW")"
assert_true "logs -f over https keeps following" alive "$follow_pid"
kill "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true

commit_change "$REPO" "v2" VERSION 2
assert_exit 0 dctl deploy
expect_serving web "hello from 2" "v2 deployed over https (uploads over TLS)"
assert_exit 0 dctl rollback
expect_serving web "hello from 1" "rollback over https: v1 is back"
assert_exit 0 dctl releases
assert_contains "$OUT" "v2" "releases over https"
assert_exit 0 "$DEPLOYCTL_BIN" --host "$AGENT_URL" --ca-file "$PKI/ca.pem" agent ping
pass "--ca-file works without deploy.toml"

# No ca_file: the test CA is unknown to the system store -> exit 3, what to do.
assert_exit 3 "$DEPLOYCTL_BIN" --host "$AGENT_URL" -a web status
assert_contains "$ERR" "the certificate of $AGENT_URL is not trusted" "unknown CA: not trusted"
assert_contains "$ERR" "set ca_file or fingerprint" "unknown CA: says to set ca_file or fingerprint"
# The same in deploy.toml's target: the message names the target.
OTHER=$TEST_TMP/other
mkdir -p "$OTHER"
printf 'app = "web"\n[targets.prod]\nhosts = ["%s"]\n' "$AGENT_URL" >"$OTHER/deploy.toml"
assert_exit 3 "$DEPLOYCTL_BIN" -C "$OTHER" status
assert_contains "$ERR" "set ca_file or fingerprint for target prod in deploy.toml" "unknown CA: names the target to fix"
# A ca_file that does not exist is a config error.
printf 'ca_file = "missing.pem"\n' >>"$OTHER/deploy.toml"
assert_exit 2 "$DEPLOYCTL_BIN" -C "$OTHER" status
assert_contains "$ERR" "missing.pem" "a missing ca_file is named"

# Plain HTTP to the TLS port: nothing useful comes back, the agent stays healthy.
PLAIN=$(curl -s --max-time 5 "http://127.0.0.1:$AGENT_PORT/v1/health" || true)
assert_not_contains "$PLAIN" '"status"' "plain HTTP to the TLS port gets no answer"
assert_exit 3 "$DEPLOYCTL_BIN" --host "http://127.0.0.1:$AGENT_PORT" agent ping
assert_exit 0 dctl agent ping
pass "the agent still answers over https after plain HTTP"

# A client that connects and never handshakes holds nobody up, and is let go.
exec 7<>"/dev/tcp/127.0.0.1/$AGENT_PORT"
start=$(date +%s%N)
assert_exit 0 dctl agent ping
elapsed=$((($(date +%s%N) - start) / 1000000))
assert_true "a ping is answered at once beside a silent connection (${elapsed} ms)" test "$elapsed" -lt 3000
start=$(date +%s)
closed=0
timeout 20 cat <&7 >/dev/null && closed=1
exec 7<&-
assert_eq 1 "$closed" "the silent connection is closed by the agent ($(($(date +%s) - start)) s after)"

# ---------------------------------------------------------------- renewal without restart
served_serial() {
    openssl s_client -connect "127.0.0.1:$AGENT_PORT" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null
}
assert_eq "serial=03E9" "$(served_serial)" "serves the first certificate (serial 1001)"
cp "$PKI/renewed.key" "$PKI/live.key.new" && mv "$PKI/live.key.new" "$PKI/live.key"
cp "$PKI/renewed.crt" "$PKI/live.crt.new" && mv "$PKI/live.crt.new" "$PKI/live.crt"
assert_eq "serial=03EA" "$(served_serial)" "a certificate replaced on disk is served at the next connection"
assert_exit 0 dctl agent info --json
assert_jq "$OUT" ".tls_fingerprint == \"$(canonical_fp "$PKI/renewed.crt")\"" "agent info shows the new fingerprint"
assert_contains "$(cat "$AGENT_LOG")" "API certificate reloaded" "the reload is logged"
# A broken renewal (the key of another certificate) keeps the previous pair serving.
cp "$PKI/agent.crt" "$PKI/live.crt.new" && mv "$PKI/live.crt.new" "$PKI/live.crt"
assert_eq "serial=03EA" "$(served_serial)" "a mismatched pair on disk: the previous certificate keeps serving"
assert_contains "$(cat "$AGENT_LOG")" "API certificate not reloaded" "the broken pair is logged"
assert_exit 0 dctl status
# SIGHUP looks at the files at once (and does not stop the agent).
cp "$PKI/renewed.crt" "$PKI/live.crt.new" && mv "$PKI/live.crt.new" "$PKI/live.crt"
reloads() { grep -c "API certificate reloaded" "$AGENT_LOG" || true; }
before=$(reloads)
kill -HUP "$AGENT_PID"
reloaded_since() { (($(reloads) > before)); }
wait_until 5 reloaded_since && pass "SIGHUP reloads the changed certificate" ||
    fail "SIGHUP reloads the changed certificate" "$(excerpt "$AGENT_LOG" 5)"
assert_true "the agent is still running after SIGHUP" alive "$AGENT_PID"
assert_eq "serial=03EA" "$(served_serial)" "the good pair is served again"

# ---------------------------------------------------------------- a pinned self-signed certificate
AGENT_EXTRA_ARGS=(--tls-cert "$PKI/self.crt" --tls-key "$PKI/self.key")
start_agent pinned
SELF_FP=$(canonical_fp "$PKI/self.crt")
make_app_repo pinned
# The pin as openssl prints it, prefix and all.
printf 'fingerprint = "%s"\n' "$(openssl_fp "$PKI/self.crt")" >>"$REPO/deploy.toml"
commit_change "$REPO" "pin the agent's certificate"
assert_exit 0 dctl deploy
expect_serving pinned "hello from 1" "deploy over https with a pinned self-signed certificate"
assert_exit 0 dctl status
assert_contains "$OUT" "v1" "status with a pin"
dctl logs -f >"$FOLLOW" 2>"$TEST_TMP/follow.err" &
follow_pid=$!
wait_until 5 has_build_line && pass "logs -f with a pin" || fail "logs -f with a pin" "$(excerpt "$FOLLOW")"
kill "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true
commit_change "$REPO" "v2" VERSION 2
assert_exit 0 dctl deploy
assert_exit 0 dctl rollback
expect_serving pinned "hello from 1" "rollback with a pin"
# --fingerprint without colons or prefix, lower-case, and no deploy.toml.
bare=$(printf '%s' "${SELF_FP#sha256:}" | tr -d ':' | tr 'A-F' 'a-f')
assert_exit 0 "$DEPLOYCTL_BIN" --host "$AGENT_URL" --fingerprint "$bare" agent ping
pass "--fingerprint in any spelling"

# A wrong pin (another real certificate's): exit 3, and nothing reached the agent.
releases_count() { curl -s --unix-socket "$AGENT_SOCKET" http://agent/v1/apps/pinned/releases | jq 'length'; }
before=$(releases_count)
assert_ne "" "$before" "the releases can be counted over the unix socket"
sed -i "s/^fingerprint = .*/fingerprint = \"$AGENT_FP\"/" "$REPO/deploy.toml"
commit_change "$REPO" "v3 with a wrong pin" VERSION 3
assert_exit 3 dctl deploy
assert_contains "$ERR" "the certificate of $AGENT_URL has fingerprint $SELF_FP, but deploy.toml (target local) pins $AGENT_FP" \
    "a wrong pin: both fingerprints named"
assert_eq "$before" "$(releases_count)" "a wrong pin: no release was created"
expect_serving pinned "hello from 1" "a wrong pin: the app is untouched"
# A malformed pin is a config error with its place in deploy.toml.
sed -i 's/^fingerprint = .*/fingerprint = "sha256:AB:CD"/' "$REPO/deploy.toml"
line=$(grep -n '^fingerprint' "$REPO/deploy.toml" | cut -d: -f1)
assert_exit 2 dctl status
assert_contains "$ERR" "deploy.toml:$line:15: fingerprint: 'sha256:AB:CD' is not a SHA-256 fingerprint" \
    "a malformed pin: file:line:col"
