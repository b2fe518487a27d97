#!/usr/bin/env bash
# deploy-proxy killed with kill -9 under load: the agent starts it again within
# about a second on the listening socket it keeps, so no connection is refused
# (connections waiting meanwhile are served by the new proxy). A restarted
# agent takes that socket over from the running proxy and does the same.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v wrk >/dev/null || fail "wrk is needed (scripts/deps installs it)"

start_agent
make_app_repo hello
APP=hello
assert_exit 0 dctl deploy
expect_serving $APP "hello from 1" "v1 served"

# kill_proxy_under_load LABEL: wrk for 6 s; the proxy is killed -9 after 2 s.
kill_proxy_under_load() {
    local label=$1 out=$TEST_TMP/wrk.$1.out before after
    before=$(proxy_pid)
    wrk -t1 -c8 -d6s --timeout 5s -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT/" >"$out" 2>&1 &
    local wrk_pid=$!
    sleep 2
    kill -9 "$before"
    local back=""
    for i in $(seq 1 30); do
        after=$(proxy_pid)
        if [[ -n $after && $after != "$before" ]] && alive "$after"; then back=$((i * 100)); break; fi
        sleep 0.1
    done
    wait "$wrk_pid" || true
    sed 's/^/    /' "$out"
    assert_ne "" "$back" "$label: a new proxy runs within 3 s (after ~${back:-?} ms)"
    local connect
    connect=$(awk '/Socket errors:/ { gsub(",", ""); print $4 }' "$out")
    assert_eq 0 "${connect:-0}" "$label: no connection refused while the proxy was down"
    assert_match "$(awk '/requests in/ {print $1}' "$out")" '^[1-9][0-9]+$' "$label: wrk got answers"
    expect_serving $APP "hello from 1" "$label: served by the new proxy"
}

kill_proxy_under_load "proxy started by this agent"

kill_agent -9
restart_agent
assert_contains "$(cat "${IT_AGENT_LOGS[-1]}")" "holding deploy-proxy's listening socket" \
    "the restarted agent took the running proxy's socket"
kill_proxy_under_load "proxy adopted by a restarted agent"

# replace_under_load LABEL EXPECTED-LOG: wrk for 6 s while the agent is killed -9 and
# restarted after 1 s; the restarted agent must replace the running proxy (its log
# says EXPECTED-LOG) without refusing a connection, and the old proxy must exit.
replace_under_load() {
    local label=$1 expected=$2 out=$TEST_TMP/wrk.replace.$RANDOM.out before
    before=$(proxy_pid)
    wrk -t1 -c8 -d6s --timeout 5s -H "Host: $APP.localhost" "http://127.0.0.1:$PROXY_PORT/" >"$out" 2>&1 &
    local wrk_pid=$!
    sleep 1
    kill_agent -9
    restart_agent
    wait "$wrk_pid" || true
    sed 's/^/    /' "$out"
    assert_contains "$(cat "${IT_AGENT_LOGS[-1]}")" "$expected" "$label: the restarted agent replaces the proxy"
    assert_ne "$before" "$(proxy_pid)" "$label: a new proxy runs"
    assert_true "$label: the old proxy drains and exits" wait_until 12 dead "$before"
    assert_not_contains "$(cat "$out")" "Socket errors" "$label: no connection refused or reset"
    assert_not_contains "$(cat "$out")" "Non-2xx" "$label: every request answered 2xx"
    expect_serving $APP "hello from 1" "$label: served by the new proxy"
}

# The agent restarted with another deploy-proxy binary path: other settings.
mkdir -p "$TEST_TMP/bin"
cp "$PROXY_BIN" "$TEST_TMP/bin/deploy-proxy"
PROXY_BIN=$TEST_TMP/bin/deploy-proxy
replace_under_load "another binary path" "with other settings; replacing it"

# An upgrade: the binary at that path replaced on disk (a new file renamed over it).
cp "$PROXY_BIN" "$TEST_TMP/bin/deploy-proxy.new"
mv "$TEST_TMP/bin/deploy-proxy.new" "$PROXY_BIN"
replace_under_load "an upgraded binary" "a binary since replaced on disk; replacing it"
