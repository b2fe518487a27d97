#!/usr/bin/env bash
# Zero-downtime under load, at CI scale: bench/rotation with constant wrk load
# through deploy-proxy (two workers) while the app is redeployed and the agent is
# killed -9 in the middle of a deploy and restarted. Not one request may fail, and
# both workers serve (the agent's per-worker counters).
source "$(dirname "$0")/lib.sh"
require_binaries
command -v wrk >/dev/null || fail "wrk is needed (scripts/deps installs it)"

out=$TEST_TMP/rotation.out
if DEPLOYCTL_BIN=$DEPLOYCTL_BIN AGENT_BIN=$AGENT_BIN ROTATIONS=${IT_ROTATIONS:-6} KILLS=1 \
    CONNECTIONS=16 PROXY_THREADS=2 "$REPO_ROOT/bench/rotation" >"$out" 2>&1; then
    pass "bench/rotation: 6 redeploys and a kill -9 of the agent under load"
else
    fail "bench/rotation: 6 redeploys and a kill -9 of the agent under load" "$(cat "$out")"
fi
sed 's/^/    /' "$out"
assert_match "$(cat "$out")" 'non-2xx responses +0$' "no non-2xx response"
assert_match "$(cat "$out")" 'socket errors +0$' "no socket error"
assert_match "$(cat "$out")" 'total requests +[1-9][0-9]{2,}' "wrk made hundreds of requests at least"
assert_contains "$(cat "$out")" 'now serving: "hello from 6"' "the last release serves"
assert_match "$(cat "$out")" 'deploy-proxy workers +2$' "deploy-proxy ran two workers"
assert_match "$(cat "$out")" 'requests per worker +[1-9][0-9]* [1-9][0-9]*$' \
    "both workers answered requests (deploy_proxy_worker_requests_total)"
