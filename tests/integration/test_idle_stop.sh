#!/usr/bin/env bash
# Scale to zero ([deploy] idle_stop) on a real agent and deploy-proxy: an app with
# idle_stop = "2s" has its web process stopped after 2 s without a request
# (status: sleeping, the release still PRODUCTION, its worker still running);
# the next request is held, the app started and health-checked, and the request
# answered 200; requests arriving together are all answered; a request in flight
# keeps it awake; it stays asleep across a kill -9 of the agent and wakes after;
# a start that fails answers 503 at once and the next request tries again; a
# deploy wakes it; idle_stop_workers stops and wakes the worker too; figures
# deploy-proxy cannot write call a sleep off.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent
APP=sleepy
REPO=$TEST_TMP/repos/$APP
MARKS=$TEST_TMP/marks
mkdir -p "$REPO" "$MARKS"
# The build makes public/ and a CGI script that answers after 4 s (busybox httpd
# runs public/cgi-bin/*). The web refuses to start while BROKEN is set.
BUILD="$DEFAULT_BUILD && mkdir -p public/cgi-bin && cp slow.cgi public/cgi-bin/slow"
WEB='if [ -n "$BROKEN" ]; then echo "refusing to start: BROKEN is set" >&2; exit 3; fi; '"$DEFAULT_RUN"
WORKER='echo $$ > '"$MARKS"'/worker.pid; exec sleep 1000'
write_sleepy() { # [extra [deploy] lines]
    {
        printf 'app = "%s"\n\n[build]\ncommand = %s\n\n' "$APP" "$(toml_string "$BUILD")"
        printf '[run]\nhealth = { path = "/healthz", interval = "1s", timeout = "10s" }\n\n'
        printf '[processes]\nweb = %s\nworker = %s\n\n' "$(toml_string "$WEB")" "$(toml_string "$WORKER")"
        printf '[deploy]\nkeep = 5\ndrain = "200ms"\nstop_timeout = "2s"\nidle_stop = "2s"\n%s\n' "${1:-}"
        printf '\n[targets.local]\nhosts = ["%s"]\n' "$AGENT_URL"
    } >"$REPO/deploy.toml"
}
git -C "$REPO" init -q -b main
git -C "$REPO" config user.name "Integration Test"
git -C "$REPO" config user.email "it@example.invalid"
echo 1 >"$REPO/VERSION"
printf 'public/\n' >"$REPO/.gitignore"
printf '#!/bin/sh\nsleep 4\nprintf "Content-Type: text/plain\\r\\n\\r\\nslow done\\n"\n' >"$REPO/slow.cgi"
chmod +x "$REPO/slow.cgi"
write_sleepy
commit_change "$REPO" "sleepy v1"

app_state() { dctl --json status 2>/dev/null | jq -r 'select(.event == "status") | .state' 2>/dev/null || true; }
is_state() { [[ $(app_state) == "$1" ]]; }
web_pid() { app_pid $APP "$1"; }
no_web() { [[ -z $(web_pid "$1") ]]; }
worker_pid() { cat "$MARKS/worker.pid" 2>/dev/null || true; }
# timed_fetch PATH: "CODE SECONDS BODY" of one request through the proxy.
timed_fetch() {
    curl -s --max-time 60 -o "$TEST_TMP/body" -w '%{http_code} %{time_total}' \
        -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT${1:-/}" || true
    printf ' %s' "$(cat "$TEST_TMP/body" 2>/dev/null)"
}

assert_exit 0 dctl deploy
expect_serving $APP "hello from 1" "v1 serves"
P1=$(web_pid v1)
assert_true "v1: its worker wrote its pid" wait_until 10 test -s "$MARKS/worker.pid"
W1=$(worker_pid)
assert_true "v1: its web runs (pid $P1)" alive "$P1"

# ------------------------------------------------------------------- asleep
assert_true "after 2 s without a request the web process is stopped" wait_until 20 dead "$P1"
assert_true "status shows it sleeping" wait_until 5 is_state sleeping
assert_eq PRODUCTION "$(release_state $APP v1)" "the release stays PRODUCTION while asleep"
assert_true "its worker keeps running (idle_stop_workers is off)" alive "$W1"
assert_exit 0 dctl apps --json
assert_jq "$OUT" '[.. | objects | select(.app == "sleepy")][0].state == "sleeping"' "apps --json: sleeping"
assert_contains "$(cat "$DATA/apps/$APP/logs/v1.ndjson")" "asleep: no request for 2s" \
    "the release's events say it went to sleep"

# ------------------------------------------------------------------ woken up
read -r code took body <<<"$(timed_fetch /)"
assert_eq "200 hello from 1" "$code $body" "the first request after sleep is answered (in ${took}s)"
assert_true "it is running again" is_state running
P2=$(web_pid v1)
assert_true "a new web process serves (pid $P2)" alive "$P2"
assert_eq "$W1" "$(worker_pid)" "the worker was not restarted"

# stats.json frozen (chattr +i: deploy-proxy cannot replace it): the agent's figures stop
# moving while requests come every 0.5 s. The check made as the app is put to sleep finds no
# figures written for that table, so the app stays awake and the requests are answered.
fetch_code $APP >/dev/null # awake (it may have fallen asleep during the checks above)
for i in $(seq 1 16); do
    echo "$(fetch_code $APP)"
    sleep 0.5
done >"$TEST_TMP/frozen" &
STEADY=$!
P_F=$(web_pid v1)
assert_ne "" "$P_F" "the web process serving the frozen-figures requests is known"
# Frozen on figures with no request in flight (a request takes milliseconds), which the
# agent's idle check reads as quiet.
quiet_figures() {
    jq -e --arg app "$APP" '.apps[$app].in_flight == 0 and .apps[$app].websockets == 0' \
        "$DATA/proxy/stats.json" >/dev/null 2>&1
}
assert_true "stats.json shows no request in flight between the requests" wait_until 5 quiet_figures
chattr +i "$DATA/proxy/stats.json"
wait "$STEADY"
chattr -i "$DATA/proxy/stats.json"
assert_eq "$(printf '200 %.0s' $(seq 1 16))" "$(paste -sd' ' "$TEST_TMP/frozen") " \
    "with stats.json frozen, requests every 0.5 s are all answered"
assert_eq "$P_F" "$(web_pid v1)" "by the same web process: it never slept"
assert_contains "$(cat "$AGENT_LOG")" "$APP stays awake: deploy-proxy's figures as it applied the table are missing" \
    "the agent's log says why it did not sleep"

# Several requests arriving together while asleep: every one answered.
assert_true "asleep again" wait_until 20 dead "$P_F"
for i in 1 2 3 4 5 6; do
    curl -s --max-time 60 -o /dev/null -w '%{http_code}\n' -H "Host: $APP.localhost" \
        "http://127.0.0.1:$PROXY_PORT/" >"$TEST_TMP/burst.$i" &
done
wait
assert_eq "200 200 200 200 200 200" "$(cat "$TEST_TMP"/burst.* | paste -sd' ')" \
    "six requests held together are all answered 200"

# A request in flight keeps it awake: a 4 s request against a 2 s idle_stop.
P3=$(web_pid v1)
timed_fetch /cgi-bin/slow >"$TEST_TMP/slow" &
slow=$!
sleep 3.5
assert_true "a request in flight (3.5 s so far) keeps the app awake" alive "$P3"
wait "$slow"
read -r code took body <<<"$(cat "$TEST_TMP/slow")"
assert_eq "200 slow done" "$code $body" "the slow request is answered"

# -------------------------------------------------------------- agent restart
assert_true "asleep before the agent is killed" wait_until 20 dead "$P3"
kill_agent -9
restart_agent
assert_true "still asleep after a kill -9 of the agent" is_state sleeping
assert_true "no web process after the restart (the agent's view)" no_web v1
assert_eq 0 "$(pids_in_dir_matching "$(release_dir $APP v1)" httpd | wc -l)" \
    "... and no httpd running in v1's folder"
read -r code took body <<<"$(timed_fetch /)"
assert_eq "200 hello from 1" "$code $body" "woken after the agent restart (in ${took}s)"

# ------------------------------------------------------- a start that fails
P4=$(web_pid v1)
assert_ne "" "$P4" "woken: its web process is known"
assert_true "asleep again" wait_until 20 dead "$P4"
assert_exit 0 dctl env set BROKEN=1
read -r code took body <<<"$(timed_fetch /)"
assert_eq 503 "$code" "a wake-up that fails answers 503 (in ${took}s)"
assert_contains "$body" "could not be started" "saying the app could not be started"
assert_eq PRODUCTION "$(release_state $APP v1)" "the release stays PRODUCTION after a failed start"
assert_true "status still shows it sleeping" is_state sleeping
assert_contains "$(cat "$AGENT_LOG")" "cannot wake up" "the failed wake-up is in the agent's log"
assert_exit 0 dctl env unset BROKEN
code_is_200() { [[ $(fetch_code $APP) == 200 ]]; }
assert_true "the next requests try again (after a backoff) and are answered 200" wait_until 20 code_is_200
assert_eq "hello from 1" "$(fetch $APP)" "serving again"

# --------------------------------------------- a deploy of a sleeping app
P5=$(web_pid v1)
assert_ne "" "$P5" "serving again: its web process is known"
assert_true "asleep before the deploy" wait_until 20 dead "$P5"
write_sleepy 'idle_stop_workers = true'
commit_change "$REPO" "sleepy v2" VERSION 2
assert_exit 0 dctl deploy
expect_serving $APP "hello from 2" "a deploy of a sleeping app serves the new release"
assert_true "running after the deploy" is_state running

# --------------------------------------------------- idle_stop_workers = true
new_worker() { local w; w=$(worker_pid); [[ -n $w && $w != "$W1" ]] && alive "$w"; }
assert_true "v2's worker wrote its pid" wait_until 10 new_worker
W2=$(worker_pid)
P6=$(web_pid v2)
assert_ne "" "$P6" "v2's web process is known"
assert_true "v2's worker runs (pid $W2)" alive "$W2"
assert_true "v2 falls asleep" wait_until 20 dead "$P6"
assert_true "idle_stop_workers: the worker is stopped too" wait_until 10 dead "$W2"
read -r code took body <<<"$(timed_fetch /)"
assert_eq "200 hello from 2" "$code $body" "v2 woken (in ${took}s)"
worker_back() { local w; w=$(worker_pid); [[ -n $w && $w != "$W2" ]] && alive "$w"; }
assert_true "idle_stop_workers: the worker is started again with the web" wait_until 10 worker_back

pass "idle_stop: asleep when unused, woken by the next request"
