#!/usr/bin/env bash
# "Live" is proven, never assumed: before deploy or rollback says "vN is live",
# the agent fetched the health path through its own deploy-proxy (with the
# app's Host and the probe key) and the proxy named the new release as the one
# that answered (docs/design.md §8). With something else answering on the
# proxy's address, deploy and rollback fail with the reason and the previous
# release keeps serving.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v python3 >/dev/null || {
    log "SKIP: needs python3 for the fake proxy (Debian: apt-get install python3)"
    exit 77
}

# A fake deploy-proxy: serves 404 on the listening socket the agent hands it
# (--listen-fd), like a program that is not this agent's proxy.
mkdir -p "$TEST_TMP/fake"
FAKE_PROXY=$TEST_TMP/fake/deploy-proxy
cat >"$FAKE_PROXY" <<'EOF'
#!/usr/bin/env python3
import socket, sys
args = sys.argv[1:]
if "--listen-fd" in args:
    server = socket.socket(fileno=int(args[args.index("--listen-fd") + 1]))
    server.setblocking(True)  # the real proxy made the shared socket non-blocking
else:
    host, port = args[args.index("--listen") + 1].rsplit(":", 1)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, int(port)))
    server.listen(64)
while True:
    client, _ = server.accept()
    try:
        client.settimeout(2)
        client.recv(65536)
        body = b"not deploy-proxy\n"
        client.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                       % len(body) + body)
    except OSError:
        pass
    finally:
        client.close()
EOF
chmod +x "$FAKE_PROXY"
REAL_PROXY=$PROXY_BIN

# ---------------------------------------------------------------- a real deploy is proven live
start_agent
make_app_repo hello
APP=hello
assert_exit 0 dctl deploy
assert_contains "$OUT" "live: http://hello.localhost/healthz through deploy-proxy on 127.0.0.1:$PROXY_PORT answered HTTP 200 from v1" \
    "deploy proves v1 live through the proxy before saying so"
assert_contains "$OUT" "v1 is live at" "then says v1 is live"
took=$(grep -o 'answered HTTP 200 from v1 ([0-9]*ms)' <<<"$OUT" | grep -o '[0-9]*ms' || true)
log "the proof took $took (one request through the proxy)"
expect_serving $APP "hello from 1" "v1 served through the proxy"

# The probe key: the agent's secret, 0600; the proxy answers a probe with the
# release it routed to, and nobody else.
KEY_FILE=$DATA/proxy/probe.key
assert_eq 600 "$(stat -c %a "$KEY_FILE")" "the probe key is readable by the agent's user only"
key=$(tr -d '[:space:]' <"$KEY_FILE")
assert_eq 64 "${#key}" "the probe key is 32 random bytes in hex"
headers=$(curl -s -D - -o /dev/null --max-time 5 -H "Host: hello.localhost" \
    -H "X-Deploy-Probe: $key" "http://127.0.0.1:$PROXY_PORT/healthz")
assert_match "$headers" '^X-Deploy-Routed: hello v1' "a probe with the key learns which release answered"
# The key with its last digit changed (to 1 where it is 0: never the key itself).
wrong_key=${key%?}0
[[ $wrong_key == "$key" ]] && wrong_key=${key%?}1
headers=$(curl -s -D - -o /dev/null --max-time 5 -H "Host: hello.localhost" \
    -H "X-Deploy-Probe: $wrong_key" "http://127.0.0.1:$PROXY_PORT/healthz")
assert_not_contains "${headers,,}" "x-deploy-routed" "a wrong key learns nothing"
headers=$(curl -s -D - -o /dev/null --max-time 5 -H "Host: hello.localhost" "http://127.0.0.1:$PROXY_PORT/")
assert_not_contains "${headers,,}" "x-deploy-routed" "an ordinary request learns nothing"
headers=$(curl -s -D - -o /dev/null --max-time 5 -H "Host: nobody.localhost" \
    -H "X-Deploy-Probe: $key" "http://127.0.0.1:$PROXY_PORT/")
assert_match "$headers" '^X-Deploy-Routed: none' "a probe for an unrouted host is told so"

commit_change "$REPO" "v2" VERSION 2
assert_exit 0 dctl deploy
assert_contains "$OUT" "answered HTTP 200 from v2" "v2 proven live"
expect_serving $APP "hello from 2" "v2 served"

# A [static] release is proven on "/" (the proxy serves it: no health path).
HELLO_REPO=$REPO
SITE_REPO=$TEST_TMP/repos/site
mkdir -p "$SITE_REPO/dist"
git -C "$SITE_REPO" init -q -b main
printf 'site 1\n' >"$SITE_REPO/dist/index.html"
cat >"$SITE_REPO/deploy.toml" <<EOF
app = "site"

[static]
dir = "dist"

[targets.local]
hosts = ["$AGENT_URL"]
EOF
git -C "$SITE_REPO" add -A
git -C "$SITE_REPO" -c user.name=t -c user.email=t@example.invalid commit -q -m "site 1"
REPO=$SITE_REPO
assert_exit 0 dctl deploy
assert_contains "$OUT" "live: http://site.localhost/ through deploy-proxy on 127.0.0.1:$PROXY_PORT answered HTTP 200 from v1" \
    "a [static] release is proven live on /"
expect_serving site "site 1" "the static site served"
REPO=$HELLO_REPO

# ---------------------------------------------------------------- another program on the proxy's address
kill_agent
PROXY_BIN=$FAKE_PROXY restart_agent
wait_until 10 bash -c "[[ \$(curl -s --max-time 1 -H 'Host: hello.localhost' http://127.0.0.1:$PROXY_PORT/) == 'not deploy-proxy' ]]" ||
    fail "the fake proxy took over the proxy's address" "$(excerpt "$AGENT_LOG")"
pass "the fake proxy answers on the proxy's address"

commit_change "$REPO" "v3" VERSION 3
assert_exit 1 dctl deploy
all="$OUT$ERR"
assert_not_contains "$all" "is live" "deploy never says 'is live' when the proof fails"
assert_contains "$all" "v3 is not live: http://hello.localhost/healthz through deploy-proxy on 127.0.0.1:$PROXY_PORT" \
    "deploy says v3 is not live and where it looked"
assert_contains "$all" "did not come from this agent's deploy-proxy" "and why: another program answered"
assert_eq FAILED "$(release_state $APP v3)" "v3 ends FAILED"
assert_contains "$(release_field $APP v3 error)" "is not live" "with the reason recorded"
assert_eq PRODUCTION "$(release_state $APP v2)" "v2 stays PRODUCTION"
dead_port=$(release_field $APP v3 port)
assert_eq "" "$dead_port" "v3's process was stopped"

commit_change "$REPO" "v4" VERSION 4
run dctl --json deploy
assert_eq 1 "$RC" "deploy --json exits 1 when the proof fails"
assert_jq "$(tail -n 1 <<<"$OUT")" '.event == "error" and .exit_code == 1 and (.message | contains("is not live"))' \
    "--json ends with an error event naming the reason"
assert_false "--json has no done event for a live release" \
    jq -e 'select(.event == "done" and .state == "PRODUCTION")' <<<"$OUT"
assert_eq PRODUCTION "$(release_state $APP v2)" "v2 still PRODUCTION"

assert_exit 1 dctl rollback v1
all="$OUT$ERR"
assert_not_contains "$all" "is live" "rollback never says 'is live' when the proof fails"
assert_contains "$all" "v1 is not live" "rollback says v1 is not live"
assert_contains "$all" "did not come from this agent's deploy-proxy" "and why"
assert_eq PRODUCTION "$(release_state $APP v2)" "after the failed rollback v2 is still PRODUCTION"
assert_eq INACTIVE "$(release_state $APP v1)" "and v1 still INACTIVE"

REPO=$SITE_REPO
printf 'site 2\n' >"$SITE_REPO/dist/index.html"
git -C "$SITE_REPO" -c user.name=t -c user.email=t@example.invalid commit -q -am "site 2"
assert_exit 1 dctl deploy
assert_contains "$OUT$ERR" "v2 is not live: http://site.localhost/ through deploy-proxy" \
    "a [static] release is not live either when another program answers"
assert_eq FAILED "$(release_state site v2)" "site v2 ends FAILED"
assert_eq PRODUCTION "$(release_state site v1)" "site v1 stays PRODUCTION"
REPO=$HELLO_REPO

# ---------------------------------------------------------------- the real proxy again
kill_agent
fake=$(proxy_pid)
[[ -n $fake ]] && kill "$fake" 2>/dev/null || true
wait_until 10 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$PROXY_PORT) 2>/dev/null" || true
PROXY_BIN=$REAL_PROXY restart_agent
wait_until 10 bash -c "[[ \$(curl -s --max-time 1 -H 'Host: hello.localhost' http://127.0.0.1:$PROXY_PORT/) == 'hello from 2' ]]" ||
    fail "the real proxy serves v2 again" "$(excerpt "$AGENT_LOG")"
pass "the real proxy serves v2 again"
commit_change "$REPO" "v5" VERSION 5
assert_exit 0 dctl deploy
assert_contains "$OUT" "answered HTTP 200 from v5" "with the real proxy the deploy is proven live"
assert_contains "$OUT" "v5 is live at" "and says so"
expect_serving $APP "hello from 5" "v5 served"
assert_exit 0 dctl rollback v2
assert_contains "$OUT$ERR" "v2 is live again" "the rollback to v2 is proven live"
expect_serving $APP "hello from 2" "v2 served after the rollback"
assert_contains "$(cat "$DATA/apps/$APP/logs/v2.ndjson")" "answered HTTP 200 from v2" \
    "the rollback's proof is in v2's events"

# ---------------------------------------------------------------- HTTPS only: the probe is not redirected
kill_agent
make_test_ca "$TEST_TMP/pki"
issue_cert site "DNS:hello.localhost"
HTTPS_PORT=$(free_port)
# The API stays plain; the proxy gets a certificate and redirects plain HTTP.
cat >"$TEST_TMP/agent.toml" <<EOF
[proxy]
https_listen = "127.0.0.1:$HTTPS_PORT"
redirect_https = true

[[proxy.certificates]]
cert = "$PKI/site.crt"
key = "$PKI/site.key"
EOF
AGENT_EXTRA_ARGS=(--config "$TEST_TMP/agent.toml")
restart_agent
assert_eq 308 "$(fetch_code $APP /)" "plain HTTP to hello.localhost is redirected to https"
commit_change "$REPO" "v6" VERSION 6
assert_exit 0 dctl deploy
assert_contains "$OUT" "answered HTTP 200 from v6" "an HTTPS-only app is proven live (the probe is not redirected)"
assert_eq "hello from 6" "$(curl -s --max-time 5 --cacert "$PKI/ca.pem" \
    --resolve "hello.localhost:$HTTPS_PORT:127.0.0.1" "https://hello.localhost:$HTTPS_PORT/")" \
    "v6 served over https"
