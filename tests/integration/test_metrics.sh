#!/usr/bin/env bash
# deploy-agent serve --metrics-listen (docs/metrics.md): GET /metrics in the Prometheus text
# format, without a token: deployments by app and outcome with their durations, releases by
# state, build slots. The real Prometheus scrapes it (the format is proved by its parser) and
# its query API returns the agent's figures; the API port still wants a token for /metrics'
# neighbours; a taken metrics address stops serve with the reason.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v prometheus >/dev/null || {
    log "SKIP: needs prometheus (Debian: apt-get install prometheus)"
    exit 77
}

METRICS_PORT=$(free_port)
AGENT_EXTRA_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT")
start_agent
METRICS="http://127.0.0.1:$METRICS_PORT/metrics"
make_app_repo hello
APP=hello
assert_exit 0 dctl deploy
write_toml "$REPO" hello build='echo "this build fails"; exit 3'
commit_change "$REPO" "a build that fails"
assert_exit 1 dctl deploy

body=$(curl -s --max-time 5 -D "$TEST_TMP/metrics.headers" "$METRICS")
assert_contains "$(cat "$TEST_TMP/metrics.headers")" "text/plain; version=0.0.4" "GET /metrics: the Prometheus text format, no token needed"
assert_contains "$body" 'deploy_agent_deployments_total{app="hello",outcome="production"} 1' "one deployment of hello went PRODUCTION"
assert_contains "$body" 'deploy_agent_deployments_total{app="hello",outcome="failed"} 1' "one failed"
assert_contains "$body" 'deploy_agent_deployment_duration_seconds_count{app="hello"} 2' "both have a duration"
assert_contains "$body" 'deploy_agent_releases{app="hello",state="PRODUCTION"} 1' "releases by state: one PRODUCTION"
assert_contains "$body" 'deploy_agent_releases{app="hello",state="FAILED"} 1' "... one FAILED"
assert_contains "$body" 'deploy_agent_build_slots 2' "build slots"
assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$METRICS_PORT/v1/apps")" \
    "the metrics address serves nothing of the API"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$AGENT_URL/v1/apps")" \
    "the API still wants a token"

# --- deploy-proxy's figures ---------------------------------------------------------------
for _ in 1 2 3 4 5; do fetch hello / >/dev/null; done
fetch hello /no-such-page >/dev/null
# figure NAME{LABELS}: its value in the agent's /metrics (empty when absent).
figure() { curl -s --max-time 5 "$METRICS" | awk -v m="$1" '$1 == m { print $2 }'; }
GET_2XX='deploy_proxy_requests_total{app="hello",method="GET",code="2xx"}'
GET_4XX='deploy_proxy_requests_total{app="hello",method="GET",code="4xx"}'
# Both: a snapshot may fall between the last 200 and the 404 (the proxy counts a request
# once its answer is written, after the client has it).
counted() { [[ $(figure "$GET_2XX") -ge 5 && $(figure "$GET_4XX") -ge 1 ]] 2>/dev/null; }
assert_true "deploy-proxy's requests reach /metrics within its 1 s snapshot" wait_until 5 counted
assert_eq 1 "$(figure "$GET_4XX")" "the 404 is counted as 4xx"
assert_match "$(figure 'deploy_proxy_response_bytes_total{app="hello"}')" '^[1-9][0-9]*$' "answer bytes are counted"
assert_match "$(figure 'deploy_proxy_request_duration_seconds_count{app="hello"}')" '^[1-9][0-9]*$' "durations are counted"
BEFORE=$(figure "$GET_2XX")
PROXY_PID=$(cut -d' ' -f1 "$DATA/proxy/proxy.pid")
kill -9 "$PROXY_PID"
back() { [[ $(fetch hello /) == "hello from 1" ]]; }
assert_true "deploy-proxy killed -9 is started again by the agent" wait_until 15 back
after_restart() { [[ $(figure "$GET_2XX") -gt $BEFORE ]] 2>/dev/null; }
assert_true "after the proxy's restart its counter goes on from $BEFORE, never back" wait_until 5 after_restart

# --- the real Prometheus scrapes it ---------------------------------------------------------
PROM_PORT=$(free_port)
mkdir -p "$TEST_TMP/prometheus"
cat >"$TEST_TMP/prometheus/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: deploy-agent
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
YAML
prometheus --config.file="$TEST_TMP/prometheus/prometheus.yml" \
    --storage.tsdb.path="$TEST_TMP/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    >"$TEST_TMP/prometheus/log" 2>&1 &
PROM_PID=$!
query() {
    curl -s --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" 2>/dev/null || true
}
scraped() { [[ $(query 'up{job="deploy-agent"}' | jq -r '.data.result[0].value[1] // empty' 2>/dev/null) == 1 ]]; }
assert_true "Prometheus scraped the agent: up == 1 ($(tail -n 3 "$TEST_TMP/prometheus/log" | tr '\n' ' ' | cut -c1-300))" wait_until 30 scraped
failed_figure() { query 'deploy_agent_deployments_total{app="hello",outcome="failed"}' | jq -r '.data.result[0].value[1] // empty' 2>/dev/null || true; }
assert_eq 1 "$(failed_figure)" "Prometheus has deploy_agent_deployments_total{outcome=failed} = 1"
assert_eq 2 "$(query 'sum(deploy_agent_releases{app="hello"})' | jq -r '.data.result[0].value[1] // empty')" \
    "Prometheus sums hello's releases: 2"
assert_eq 0 "$(query 'scrape_samples_post_metric_relabeling{job="deploy-agent"} == 0' | jq -r '.data.result | length')" \
    "every scrape had samples"
kill "$PROM_PID" 2>/dev/null || true

# --- a taken metrics address stops serve with the reason ----------------------------------
# (deploy-proxy outlives the agent: its port stays taken.)
kill_agent
run "$AGENT_BIN" serve --data-dir "$TEST_TMP/other" --listen "127.0.0.1:$(free_port)" --socket "" \
    --proxy-listen "127.0.0.1:$(free_port)" --engine process --metrics-listen "127.0.0.1:$PROXY_PORT"
assert_ne 0 "$RC" "serve with a metrics address in use: not started"
assert_contains "$ERR" "metrics: cannot listen on 127.0.0.1:$PROXY_PORT" "... and says why"
pass "metrics: the agent's figures in the Prometheus format, scraped by Prometheus"
