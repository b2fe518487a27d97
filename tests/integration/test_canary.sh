#!/usr/bin/env bash
# Canary releases (issue 16): deploy --canary 20 makes v2 CANARY next to PRODUCTION v1;
# 1,000 cookie-less requests from distinct client ids (X-Deploy-Client) give v2 15-25% of
# them; the deploy_canary cookie keeps a client on its side (either way); a plain deploy is
# refused while the canary exists; canary set 50 changes the share; canary promote makes v2
# PRODUCTION (v1 drains to INACTIVE); canary abort of the next one (v3) stops it and makes it
# FAILED "canary aborted"; --auto aborts a canary that answers 500 (v5) and promotes one that
# answers 200 (v6), each decision with its figures in the release's events; a canary whose
# process dies (v7) is aborted and every client goes back to PRODUCTION.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v python3 >/dev/null || {
    log "SKIP: needs python3"
    exit 77
}

start_agent
APP=canary
make_app_repo $APP
assert_exit 0 dctl deploy
assert_eq "hello from 1" "$(fetch $APP /)" "v1 serves"

commit_change "$REPO" "v2" VERSION 2
assert_exit 0 dctl deploy --canary 20
assert_contains "$OUT$ERR" "CANARY" "deploy --canary ends at CANARY"
assert_eq CANARY "$(release_state $APP v2)" "v2 is CANARY"
assert_eq PRODUCTION "$(release_state $APP v1)" "v1 is still PRODUCTION"
assert_jq "$(cat "$DATA/proxy/routes.json")" \
    '[.routes[] | select(.app == "canary")][0] | .release == "v1" and .canary.release == "v2" and .canary.percent == 20 and (.canary.upstreams | length) == 1' \
    "routes.json: the app's route has a canary side (v2, 20%)"

# split N PREFIX [COOKIE]: N requests, each from its own client id PREFIX-i, counted by answer.
split() {
    python3 - "$PROXY_PORT" "$APP.localhost" "$1" "$2" "${3:-}" <<'PY'
import http.client, sys
port, host, n, prefix, cookie = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
counts, cookies = {}, set()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(n):
    headers = {"Host": host, "X-Deploy-Client": f"{prefix}-{i}"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("GET", "/", headers=headers)
    r = conn.getresponse()
    body = r.read().decode().strip()
    counts[body] = counts.get(body, 0) + 1
    c = r.getheader("Set-Cookie")
    if c:
        cookies.add(c.split(";")[0])
import os
print(counts.get(os.environ.get("CANARY_BODY", "hello from 2"), 0), counts.get(os.environ.get("PROD_BODY", "hello from 1"), 0), sum(counts.values()), " ".join(sorted(cookies)))
PY
}
read -r TO_V2 TO_V1 TOTAL COOKIES < <(split 1000 client)
log "1000 cookie-less clients at 20%: v2 $TO_V2, v1 $TO_V1 (set cookies: $COOKIES)"
assert_eq 1000 "$((TO_V2 + TO_V1))" "every one of 1000 requests answered by v1 or v2"
assert_true "v2 got 15-25% of 1000 clients ($TO_V2)" test "$TO_V2" -ge 150 -a "$TO_V2" -le 250
assert_eq "deploy_canary=v2:c deploy_canary=v2:p" "$COOKIES" "first answers set the sticky cookie for either side"

# The cookie wins over the client's hash: 200 other clients all kept on its side.
read -r C2 C1 _ CSET < <(split 200 sticky "deploy_canary=v2:c")
assert_eq "200 0" "$C2 $C1" "cookie v2:c: all 200 requests on the canary"
assert_eq "" "${CSET:-}" "no Set-Cookie when the request has the cookie"
read -r P2 P1 _ _ < <(split 200 sticky "a=b; deploy_canary=v2:p; c=d")
assert_eq "0 200" "$P2 $P1" "cookie v2:p (among others): all 200 requests on production"
read -r O2 O1 _ OSET < <(split 1000 client "deploy_canary=v1:c")
assert_eq "$TO_V2" "$O2" "another release's cookie does not count: the same hash split"
# A browser (cookie jar): the side of its first answer, every time.
JAR=$TEST_TMP/jar
curl -s -c "$JAR" -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT/" >"$TEST_TMP/first"
FIRST=$(cat "$TEST_TMP/first")
SAME=0
for _ in $(seq 1 20); do
    [[ $(curl -s -b "$JAR" -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT/") == "$FIRST" ]] && SAME=$((SAME + 1))
done
assert_eq 20 "$SAME" "a cookie jar stays on its first side ($FIRST) for 20 requests"

# A plain deploy while the canary exists: refused, naming promote and abort.
commit_change "$REPO" "v3" VERSION 3
assert_exit 5 dctl deploy
assert_contains "$ERR" "deployctl canary promote" "the refusal names canary promote"
assert_contains "$ERR" "deployctl canary abort" "... and canary abort"

# deployctl canary: the split; canary set 50.
assert_exit 0 dctl canary
assert_contains "$OUT" "canary v2 takes 20% of the traffic, PRODUCTION v1 80%" "canary shows the split"
assert_exit 0 dctl --json canary
assert_jq "$OUT" 'select(.event == "canary") | .release == "v2" and .production == "v1" and .percent == 20' "canary --json"
# Each side's figures from deploy-proxy (stats.json is rewritten each second).
figures() {
    run dctl --json canary
    jq -e 'select(.event == "canary") | .sides.canary.release == "v2" and .sides.canary.requests >= '"$TO_V2"' and .sides.production.release == "v1" and .sides.production.requests >= '"$TO_V1"' and .sides.canary.errors == 0 and .sides.canary.p95_ms > 0' <<<"$OUT" >/dev/null
}
assert_true "canary --json: each side's requests, 5xx and p95" wait_until 5 figures
log "figures: $(jq -c 'select(.event == "canary") | .sides' <<<"$OUT")"
assert_exit 0 dctl canary
assert_match "$OUT" 'canary +v2 +[0-9]+ +0\.00% +[0-9.]+ms' "canary shows the canary side's requests, 5xx rate and p95"
assert_match "$OUT" 'production +v1 +[0-9]+ +0\.00% +[0-9.]+ms' "... and production's"
assert_exit 0 dctl canary set 50
assert_contains "$OUT" "canary v2 takes 50%" "canary set 50"
assert_jq "$(cat "$DATA/proxy/routes.json")" '[.routes[] | select(.app == "canary")][0].canary.percent == 50' "routes.json: 50%"
read -r H2 _ _ _ < <(split 1000 half)
assert_true "at 50%, v2 got 40-60% of 1000 clients ($H2)" test "$H2" -ge 400 -a "$H2" -le 600

# Promote: v2 PRODUCTION, v1 drains to INACTIVE, no canary side left.
V1_PID=$(app_pid $APP v1)
assert_exit 0 dctl canary promote
assert_contains "$OUT$ERR" "promoted" "canary promote reports it"
assert_eq PRODUCTION "$(release_state $APP v2)" "promote: v2 is PRODUCTION"
inactive_v1() { [[ $(release_state $APP v1) == INACTIVE ]]; }
assert_true "promote: v1 becomes INACTIVE" wait_until 10 inactive_v1
assert_jq "$(cat "$DATA/proxy/routes.json")" '[.routes[] | select(.app == "canary")][0] | .release == "v2" and (has("canary") | not)' "routes.json: v2, no canary"
read -r A2 A1 _ _ < <(split 200 after)
assert_eq "200 0" "$A2 $A1" "after promote every client gets v2"
assert_true "v1's process is stopped after the drain" wait_until 10 dead "$V1_PID"
assert_exit 2 dctl canary
assert_contains "$ERR" "no canary release" "canary with none: not found"

# Abort: v3 as a canary, then aborted.
assert_exit 0 dctl deploy --canary 30
assert_eq CANARY "$(release_state $APP v3)" "v3 is CANARY"
V3_PID=$(app_pid $APP v3)
assert_true "v3 runs" alive "$V3_PID"
# An agent restart keeps the canary: adopted, still routed with its share.
kill_agent -9
restart_agent
assert_eq CANARY "$(release_state $APP v3)" "after an agent restart v3 is still CANARY"
assert_eq "$V3_PID" "$(app_pid $APP v3)" "... the same process, adopted"
canary_routed() { jq -e '[.routes[] | select(.app == "canary")][0] | .canary.release == "v3" and .canary.percent == 30' "$DATA/proxy/routes.json" >/dev/null 2>&1; }
assert_true "... and routed with its 30%" wait_until 10 canary_routed
read -r R3 R2 R3TOTAL _ < <(CANARY_BODY="hello from 3" PROD_BODY="hello from 2" split 1000 restarted)
assert_eq 1000 "$((R3 + R2))" "after the restart every request is answered by v3 or v2"
log "after the restart at 30%: $R3 of $R3TOTAL clients on the canary"
assert_true "after the restart, 25-35% of 1000 clients reach v3 ($R3)" test "$R3" -ge 250 -a "$R3" -le 350
assert_exit 0 dctl canary abort
assert_contains "$OUT$ERR" "aborted" "canary abort reports it"
assert_eq FAILED "$(release_state $APP v3)" "abort: v3 is FAILED"
assert_eq "canary aborted" "$(release_field $APP v3 error)" "abort: its reason is \"canary aborted\""
assert_true "abort: v3's process is stopped" wait_until 10 dead "$V3_PID"
assert_eq PRODUCTION "$(release_state $APP v2)" "abort: v2 stays PRODUCTION"
read -r B2 _ _ _ < <(split 200 aborted)
assert_eq 200 "$B2" "after abort every client gets v2"
assert_exit 0 dctl deploy
assert_eq PRODUCTION "$(release_state $APP v4)" "a plain deploy works again once the canary is gone"

# --auto with a canary that answers 500: aborted once due, the figures in its events.
cat >"$REPO/server500.py" <<'PY'
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/healthz" else 500
        self.send_response(code)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"bad\n")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
PY
sed -i 's|^command = "exec busybox httpd.*|command = "exec python3 server500.py"|' "$REPO/deploy.toml"
commit_change "$REPO" "v5 answers 500"
assert_exit 0 dctl deploy --canary 50 --auto 6s --max-error-rate 5
assert_eq CANARY "$(release_state $APP v5)" "v5 is CANARY (healthy: /healthz answers 200)"
read -r _ _ TOTAL5 _ < <(split 200 auto)
assert_eq 200 "$TOTAL5" "200 requests answered while v5 is a canary"
auto_aborted() { [[ $(release_state $APP v5) == FAILED ]]; }
assert_true "--auto aborts the canary that answers 500" wait_until 20 auto_aborted
assert_eq "canary aborted" "$(release_field $APP v5 error)" "--auto: the reason is \"canary aborted\""
assert_eq PRODUCTION "$(release_state $APP v4)" "--auto abort: v4 stays PRODUCTION"
assert_exit 0 dctl logs v5
assert_match "$OUT" 'auto: aborted: canary v5 [0-9]+ requests, 5xx 100\.00%.*PRODUCTION v4 [0-9]+ requests, 5xx 0\.00%' \
    "the decision and its figures are in v5's events"
log "auto decision: $(grep -o 'auto: aborted.*' <<<"$OUT" | head -1)"

# --auto with a healthy canary: promoted once due, v4 drains to INACTIVE.
sed -i 's|^command = "exec python3 server500.py"|command = "exec busybox httpd -f -p 127.0.0.1:$PORT -h public"|' "$REPO/deploy.toml"
commit_change "$REPO" "v6 answers 200" VERSION 6
V4_BODY=$(fetch $APP /)
assert_exit 0 dctl deploy --canary 50 --auto 4s
assert_eq CANARY "$(release_state $APP v6)" "v6 is CANARY"
read -r TO_V6 TO_V4 TOTAL6 _ < <(CANARY_BODY="hello from 6" PROD_BODY="$V4_BODY" split 200 healthy)
assert_eq 200 "$((TO_V6 + TO_V4))" "200 requests answered by v6 or v4 while v6 is a canary"
auto_promoted() { [[ $(release_state $APP v6) == PRODUCTION ]]; }
assert_true "--auto promotes the canary that answers 200" wait_until 20 auto_promoted
drained() { [[ $(release_state $APP v4) == INACTIVE ]]; }
assert_true "--auto promote: v4 drains to INACTIVE" wait_until 20 drained
assert_eq "hello from 6" "$(fetch $APP /)" "--auto promote: v6 serves every client"
assert_exit 0 dctl logs v6
assert_match "$OUT" 'auto: promoted: canary v6 [0-9]+ requests, 5xx 0\.00%.*PRODUCTION v4 [0-9]+ requests, 5xx 0\.00%' \
    "the promotion and its figures are in v6's events"
log "auto decision: $(grep -o 'auto: promoted.*' <<<"$OUT" | head -1)"

# A canary whose process dies is aborted (not restarted): its clients go back to PRODUCTION.
commit_change "$REPO" "v7" VERSION 7
assert_exit 0 dctl deploy --canary 50
V7_PID=$(app_pid $APP v7)
assert_true "v7 runs as a canary" alive "$V7_PID"
kill -9 "$V7_PID"
died_aborted() { [[ $(release_state $APP v7) == FAILED ]]; }
assert_true "a canary whose process died is aborted" wait_until 10 died_aborted
assert_eq "canary aborted" "$(release_field $APP v7 error)" "... its reason is \"canary aborted\""
assert_eq PRODUCTION "$(release_state $APP v6)" "... v6 stays PRODUCTION"
assert_exit 0 dctl logs v7
assert_match "$OUT" 'canary: aborted: its process exited' "... v7's events say its process exited"
read -r _ ON_V6 TOTAL7 _ < <(CANARY_BODY="hello from 7" PROD_BODY="hello from 6" split 200 died)
assert_eq "200 200" "$ON_V6 $TOTAL7" "after the canary died every client gets v6"

pass "canary: split, sticky cookies, set, promote and abort"
