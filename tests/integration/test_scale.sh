#!/usr/bin/env bash
# deployctl scale (docs/processes.md "Instances"): web instances each on their own port,
# balanced by deploy-proxy (requests answered by two different pids); an instance killed -9
# under wrk costs no failed request, is unrouted, restarted and routed again; worker
# instances; the counts are kept across deploys and agent restarts and shown by ps;
# web=0 unroutes the app (503 with its own page) while its worker runs; bad counts refused.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v wrk >/dev/null || {
    log "SKIP: needs wrk (Debian: apt-get install wrk)"
    exit 77
}

start_agent
APP=scaled
MARKS=$TEST_TMP/marks
mkdir -p "$MARKS"
# Each web instance serves its own directory: "pid PID" of the process on its port.
WEB='D="$MARKS/www.$PORT"; mkdir -p "$D"; echo ok > "$D/healthz"; echo "pid $$" > "$D/index.html"; exec busybox httpd -f -p 127.0.0.1:$PORT -h "$D"'
WORKER='echo $$ > "$MARKS/$RELEASE.$PROCESS.pid"; while :; do sleep 0.2; done'
make_app_repo $APP
sed -i '/^command = "exec busybox/d' "$REPO/deploy.toml"
printf '\n[env]\nMARKS = %s\n\n[processes]\nweb = %s\nworker = %s\n' "$(toml_string "$MARKS")" \
    "$(toml_string "$WEB")" "$(toml_string "$WORKER")" >>"$REPO/deploy.toml"
commit_change "$REPO" "a worker"
ps_json() { dctl --json ps 2>/dev/null | jq -c 'select(.event == "processes")' 2>/dev/null || true; }
# pids PROCESS: the running instances' pids, sorted, one line.
pids() { ps_json | jq -r "[.processes[] | select(.process == \"$1\" and .state == \"running\") | .pid | tostring] | sort | join(\" \")" 2>/dev/null || true; }
count_of() { ps_json | jq -r "[.processes[] | select(.process == \"$1\" and .state == \"running\")] | length" 2>/dev/null || echo 0; }
# served N: the distinct bodies of N requests through the proxy, one line.
served() {
    local i
    for i in $(seq 1 "$1"); do fetch $APP /; echo; done | grep . | LC_ALL=C sort -u | tr '\n' ' ' | sed 's/ $//'
}
serves_pids() { [[ $(served 12) == "$(pids web | sed -E 's/([0-9]+)/pid \1/g')" ]]; }

# --- v1 at the default counts: one web, one worker -------------------------------------------
assert_exit 0 dctl deploy
assert_exit 0 dctl scale
assert_contains "$OUT" "scale: web=1 worker=1" "scale without counts: the counts in force"
assert_eq 1 "$(count_of web)" "v1: one web instance"

# --- web=2: two ports, two pids, both answering through the proxy ----------------------------
assert_exit 0 dctl scale web=2
assert_contains "$OUT" "scale: web=2 worker=1" "scale web=2: the new counts"
assert_match "$OUT" 'web\.2 +running +[0-9]+' "scale web=2: web.2 is listed running"
assert_eq 2 "$(count_of web)" "ps: two web instances running"
P=($(pids web))
assert_true "requests through deploy-proxy are answered by both pids (${P[*]})" wait_until 5 serves_pids
assert_contains "$(cat "$DATA/proxy/routes.json")" '"upstreams"' "routes.json lists the instances as upstreams"

# --- an instance killed -9 under wrk: no failed request; unrouted, restarted, routed again ----
WEB2=$(ps_json | jq -r '.processes[] | select(.process == "web" and .instance == 2) | .pid')
wrk -t1 -c8 -d4s --timeout 5s -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT/" >"$TEST_TMP/wrk.out" 2>&1 &
WRK=$!
sleep 1
kill -9 "$WEB2"
expect_wrk_clean "$WRK" "$TEST_TMP/wrk.out" "while web.2 (pid $WEB2) was killed -9"
restarted() { [[ $(ps_json | jq -r '.processes[] | select(.process == "web" and .instance == 2) | "\(.state) \(.restarts)"') == "running 1" ]]; }
assert_true "web.2 is restarted and counted" wait_until 10 restarted
assert_true "the restarted web.2 answers through the proxy again" wait_until 10 serves_pids
assert_exit 0 dctl logs v1
# Unrouted by whichever notices first: the health check (failed) or the supervisor (restarted).
assert_true "the release's log: web.2 was unrouted" grep -Eq \
    "web.2 (failed its health check|exited with signal 9; restarted \(pid [0-9]+\): not routed until it passes)" <<<"$OUT"
assert_contains "$OUT" "web.2 passes its health check again: routed" "... and routed again"

# --- worker=2 ----------------------------------------------------------------------------------
assert_exit 0 dctl scale worker=2
assert_eq 2 "$(count_of worker)" "scale worker=2: two worker instances"
assert_true "worker.2 got \$PROCESS worker.2" test -s "$MARKS/v1.worker.2.pid"

# --- kept across a deploy and an agent restart -----------------------------------------------
commit_change "$REPO" "v2" VERSION 2
assert_exit 0 dctl deploy
# Its workers start once web is live, after deployctl returned.
wait_until 10 eval '[[ $(ps_json | jq "[.processes[] | select(.state == \"running\")] | length") == 4 ]]' || true
assert_jq "$(ps_json)" '.release == "v2" and .scale == {"web": 2, "worker": 2} and ([.processes[] | select(.state == "running")] | length == 4)' \
    "v2 starts at the scaled counts: two web, two workers"
assert_true "v2: both web instances answer" wait_until 5 serves_pids
stopped_v1() { ! alive "$(cat "$MARKS/v1.worker.2.pid")"; }
assert_true "v1's second worker was stopped" wait_until 10 stopped_v1
BEFORE=$(pids web)
kill_agent -9
restart_agent
assert_eq "$BEFORE" "$(pids web)" "agent restart: both web instances adopted (same pids)"
assert_eq 2 "$(count_of worker)" "agent restart: two workers"

# --- web=0: unrouted, 503 with its page; the workers keep running; web=1 serves again ----------
assert_exit 0 dctl scale web=0
assert_contains "$OUT" "scale: web=0 worker=2" "scale web=0: the counts"
assert_eq 503 "$(fetch_code $APP /)" "web=0: deploy-proxy answers 503"
assert_contains "$(fetch $APP /)" "scaled to zero" "... saying it is scaled to zero"
assert_eq 0 "$(count_of web)" "web=0: no web runs"
assert_eq 2 "$(count_of worker)" "web=0: the workers still run"
assert_exit 0 dctl scale web=1 worker=1
assert_eq 1 "$(count_of web)" "web=1: one web instance"
assert_eq 1 "$(count_of worker)" "worker=1: one worker"
assert_true "web=1 answers through the proxy" wait_until 5 serves_pids
assert_not_contains "$(cat "$DATA/proxy/routes.json")" '"upstreams"' "one instance: a plain upstream again"

# --- refused ----------------------------------------------------------------------------------
assert_exit 2 dctl scale web=65
assert_contains "$ERR" "the count is a whole number from 0 to 64" "scale web=65: refused by deployctl"
assert_exit 2 dctl scale web
assert_contains "$ERR" "expected PROCESS=COUNT" "scale web: refused"
assert_exit 2 dctl scale nosuch=1
assert_contains "$ERR" "has no process named 'nosuch' (its processes: web, worker" "scale nosuch=1: the agent names the processes"
api POST /v1/apps/$APP/scale -H 'Content-Type: application/json' --data '{"web": "2"}'
assert_eq 400 "$API_STATUS" "POST scale with a string count: 400"
assert_exit 0 dctl --json scale worker=1
assert_jq "$(tail -n1 <<<"$OUT")" '.event == "processes" and .scale.worker == 1' "scale --json: the processes event"
pass "scale: web instances balanced and supervised, workers scaled, counts kept, web=0 unrouted"
