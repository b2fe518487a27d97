#!/usr/bin/env bash
# Traffic control on a real agent and deploy-proxy: maintenance mode (503,
# Retry-After, the built-in page, the release's maintenance.html, JSON for API
# clients, a deploy health-checked through it, kept across a kill -9 of the
# agent and of the proxy, audited) and pause/resume (requests held, not
# refused: 0 failed under wrk through a 5 s pause; 503 past the timeout).
source "$(dirname "$0")/lib.sh"
require_binaries

start_and_deploy_hello "hello v1 served"
proxy_url="http://127.0.0.1:$PROXY_PORT/"
proxy_replaced() { local now; now=$(proxy_pid); [[ -n $now && $now != "$1" ]] && alive "$now"; }
code_is() { [[ $(fetch_code hello) == "$1" ]]; }

# ------------------------------------------------------------------ maintenance
assert_exit 0 dctl maintenance
assert_contains "$OUT" "hello: maintenance off" "maintenance shows it off at first"
assert_exit 0 dctl maintenance on --message "Back at 10:00 <UTC>" --retry-after 5m
assert_contains "$OUT" "Maintenance mode on for hello" "maintenance on says so"
assert_eq 503 "$(fetch_code hello)" "in maintenance the proxy answers 503"
headers=$(curl -s -D - -o "$TEST_TMP/page.html" --max-time 5 -H "Host: hello.localhost" "$proxy_url")
assert_match "$headers" $'Retry-After: 300\r' "with Retry-After: 300 (--retry-after 5m)"
assert_match "$headers" 'Content-Type: text/html' "a browser (Accept */*) gets HTML"
assert_contains "$(cat "$TEST_TMP/page.html")" "<p>Back at 10:00 &lt;UTC&gt;</p>" \
    "the built-in page carries the message, HTML-escaped"
json=$(curl -s --max-time 5 -H "Host: hello.localhost" -H "Accept: application/json" "$proxy_url")
assert_jq "$json" '.error == "Back at 10:00 <UTC>" and .maintenance == true and .retry_after == 300' \
    "a client that accepts only JSON gets {\"error\": MESSAGE}"
assert_exit 0 dctl maintenance --json
assert_jq "$OUT" '.event == "traffic" and .action == "show" and .app == "hello" and .maintenance.message == "Back at 10:00 <UTC>" and .maintenance.retry_after == 300 and (.maintenance.since | length) > 0 and .paused == null' \
    "maintenance --json: a traffic event with the message, Retry-After and since"

# A deploy is health-checked through the proxy: maintenance does not stop it,
# and the new release's maintenance.html becomes the page.
commit_change "$REPO" "v2 with a maintenance page" VERSION 2 maintenance.html "<h1>We are upgrading hello</h1>"
assert_exit 0 dctl deploy
assert_eq PRODUCTION "$(release_state hello v2)" \
    "a deploy during maintenance goes live (its health check bypasses it)"
assert_eq 503 "$(fetch_code hello)" "still 503 after the deploy"
assert_eq "<h1>We are upgrading hello</h1>" "$(fetch hello)" "the release's maintenance.html is the page"

# A maintenance.html that links within the tree is followed; without one,
# the built-in page.
mkdir -p "$REPO/public"
printf '<h1>linked page</h1>\n' >"$REPO/pages.html"
ln -sf pages.html "$REPO/maintenance.html"
commit_change "$REPO" "v3: a linked maintenance page" VERSION 3
assert_exit 0 dctl deploy
assert_eq "<h1>linked page</h1>" "$(fetch hello)" "a maintenance.html linking within the release is served"
git -C "$REPO" rm -q maintenance.html
commit_change "$REPO" "v4: no maintenance page" VERSION 4
assert_exit 0 dctl deploy
assert_contains "$(fetch hello)" "Back at 10:00" "a release without maintenance.html: the built-in page"

# Kept across a kill -9 of the agent, and of the proxy.
kill_agent -9
restart_agent
assert_eq 503 "$(fetch_code hello)" "maintenance kept across a kill -9 of the agent"
old_proxy=$(proxy_pid)
kill -9 "$old_proxy"
assert_true "the agent starts a new proxy" wait_until 20 proxy_replaced "$old_proxy"
assert_true "the new proxy answers 503 for hello" wait_until 10 code_is 503
assert_exit 0 dctl audit
assert_match "$OUT" 'POST /v1/apps/hello/maintenance +ok 200' "the audit log has who turned maintenance on"
assert_eq "maintenance on (Retry-After 300s)" \
    "$(sqlite3 "$DATA/state.db" "SELECT detail FROM transitions WHERE app = 'hello' AND detail LIKE 'maintenance%' ORDER BY rowid LIMIT 1")" \
    "state.db's history has the change"

assert_exit 0 dctl maintenance off
assert_contains "$OUT" "Maintenance mode off for hello" "maintenance off says so"
expect_serving hello "hello from 4" "served again after maintenance off"
assert_exit 0 dctl audit
assert_match "$OUT" 'DELETE /v1/apps/hello/maintenance +ok 200' "the audit log has maintenance off"
assert_exit 2 dctl -a nosuchapp maintenance on
assert_contains "$ERR" "nosuchapp" "maintenance on for an unknown app fails and names it"

# ------------------------------------------------------------------ pause
assert_exit 0 dctl pause --timeout 1s
assert_contains "$OUT" "Paused hello" "pause says so"
start=$(date +%s%N)
code=$(fetch_code hello)
elapsed=$((($(date +%s%N) - start) / 1000000))
assert_eq 503 "$code" "a request held past --timeout 1s gets 503"
assert_true "... after about 1 s (${elapsed} ms)" test "$elapsed" -ge 900 -a "$elapsed" -lt 4000
assert_contains "$(fetch hello)" "hello is paused" "... saying the app is paused"
assert_exit 0 dctl resume
expect_serving hello "hello from 4" "served at once after resume"

# 0 failed requests under wrk through a 5 s pause.
wrk -t2 -c16 -d10s --timeout 20s -H "Host: hello.localhost" "$proxy_url" >"$TEST_TMP/wrk.out" 2>&1 &
WRK=$!
sleep 2
assert_exit 0 dctl pause --timeout 20s
curl -s -o "$TEST_TMP/held.body" -w '%{http_code} %{time_total}\n' --max-time 20 \
    -H "Host: hello.localhost" "$proxy_url" >"$TEST_TMP/held.out" &
HELD=$!
sleep 5
assert_exit 0 dctl resume
wait "$HELD"
read -r held_code held_time <"$TEST_TMP/held.out"
assert_eq 200 "$held_code" "a request made during the pause is answered after resume"
assert_true "... having waited for it (${held_time} s)" awk -v t="$held_time" 'BEGIN { exit !(t >= 4) }'
assert_eq "hello from 4" "$(cat "$TEST_TMP/held.body")" "... by the app"
expect_wrk_clean "$WRK" "$TEST_TMP/wrk.out" "through a 5 s pause"

assert_exit 0 dctl --json resume
assert_jq "$OUT" '.event == "traffic" and .action == "resume" and .paused == null' "resume --json: paused is null"

pass "traffic: maintenance mode and pause/resume"
