#!/usr/bin/env bash
# Where deployctl sends a deployment: [targets] in deploy.toml, DEPLOYCTL_HOST,
# repeated --host; plain http:// to a non-loopback address is refused.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent a
start_agent b
# Two agents, two admin tokens: deployctl and acurl take each from the
# credentials file (keyed by URL), which DEPLOYCTL_TOKEN would override.
unset DEPLOYCTL_TOKEN
APP=hello
dc() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color "$@"; }
prod_on() { acurl -s "$1/v1/apps/hello" | jq -r '.production // empty' 2>/dev/null || true; }
count_on() { acurl -s "$1/v1/apps/hello/releases" | jq -r 'if type == "array" then length else 0 end' 2>/dev/null || echo 0; }

# --- hosts from [targets.local] in deploy.toml ------------------------------------
make_app_repo hello hosts="\"$A_URL\""
assert_exit 0 dc deploy
assert_eq v1 "$(prod_on "$A_URL")" "deploy.toml target: agent a has v1 in production"
assert_eq 0 "$(count_on "$B_URL")" "deploy.toml target: agent b got nothing"
expect_serving $APP "hello from 1" "deploy.toml target: served by a's proxy" "$A_PROXY_PORT"
assert_exit 0 dc -t local status
assert_exit 0 dc -t local --json status
assert_eq v1 "$(jq -r .production <<<"$OUT")" "-t local status: production v1"
assert_exit 2 dc -t nosuch deploy
assert_contains "$ERR" "nosuch" "-t nosuch: the error names the target"
assert_eq 1 "$(count_on "$A_URL")" "-t nosuch: nothing deployed"

# --- DEPLOYCTL_HOST ---------------------------------------------------------------
write_toml "$REPO" $APP hosts=
commit_change "$REPO" "No targets"
run dc deploy
assert_eq 2 "$RC" "no host anywhere: exit 2"
assert_match "$ERR" 'host|target' "no host anywhere: the error says a host is needed"
export DEPLOYCTL_HOST=$B_URL
assert_exit 0 dc deploy
unset DEPLOYCTL_HOST
assert_eq v1 "$(prod_on "$B_URL")" "DEPLOYCTL_HOST: agent b has v1 in production"
assert_eq 1 "$(count_on "$A_URL")" "DEPLOYCTL_HOST: agent a got nothing new"
expect_serving $APP "hello from 1" "DEPLOYCTL_HOST: served by b's proxy" "$B_PROXY_PORT"

# --- --host twice: both agents get the release ------------------------------------
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dc --host "$A_URL" --host "$B_URL" deploy
assert_eq v2 "$(prod_on "$A_URL")" "--host x2: agent a has v2 in production"
assert_eq v2 "$(prod_on "$B_URL")" "--host x2: agent b has v2 in production"
expect_serving $APP "hello from 2" "--host x2: a serves the new text" "$A_PROXY_PORT"
expect_serving $APP "hello from 2" "--host x2: b serves the new text" "$B_PROXY_PORT"
assert_exit 0 dc --host "$A_URL" --host "$B_URL" --json deploy --force # the same tree: --force makes a release
assert_eq 2 "$(jq -s '[.[] | select(.event == "done" and .state == "PRODUCTION")] | length' "$OUT_FILE")" \
    "--host x2 --json: a done PRODUCTION event from each agent"

# One host down: the deployment fails loudly (exit 3), the other still gets it.
dead=$(free_port)
run dc --host "$A_URL" --host "http://127.0.0.1:$dead" deploy
assert_eq 3 "$RC" "--host with one dead agent: exit 3"
assert_contains "$ERR" "127.0.0.1:$dead" "--host with one dead agent: the dead address is named"

# --- plain http:// to a non-loopback address is refused before connecting --------
before=$(count_on "$A_URL")
start=$(date +%s%N)
run timeout 20 "$DEPLOYCTL_BIN" -C "$REPO" --no-color --host http://192.0.2.1:7070 deploy
ms=$((($(date +%s%N) - start) / 1000000))
assert_eq 2 "$RC" "http:// to 192.0.2.1: exit 2 (refused, not a connection error)"
assert_contains "$ERR" "192.0.2.1" "http:// to 192.0.2.1: the error names the host"
# Well under deployctl's 10 s connect timeout (a busy machine running the sanitizer build
# needs a few seconds just to start and read the repository).
assert_true "http:// to 192.0.2.1: refused at once (${ms} ms), without trying to connect" test "$ms" -lt 8000
run timeout 20 "$DEPLOYCTL_BIN" -C "$REPO" --no-color --host http://192.0.2.1:7070 status
assert_eq 2 "$RC" "http:// to 192.0.2.1: status is refused too"
export DEPLOYCTL_HOST=http://192.0.2.1:7070
run timeout 20 "$DEPLOYCTL_BIN" -C "$REPO" --no-color deploy
unset DEPLOYCTL_HOST
assert_eq 2 "$RC" "DEPLOYCTL_HOST=http://192.0.2.1: exit 2"
write_toml "$REPO" $APP hosts='"http://192.0.2.1:7070"'
commit_change "$REPO" "Remote target over http"
run timeout 20 "$DEPLOYCTL_BIN" -C "$REPO" --no-color deploy
assert_eq 2 "$RC" "[targets] host http://192.0.2.1: exit 2"
assert_eq "$before" "$(count_on "$A_URL")" "nothing was deployed anywhere"

# --- usage errors and version -----------------------------------------------------
assert_exit 2 "$DEPLOYCTL_BIN" --no-color no-such-command
assert_exit 2 "$DEPLOYCTL_BIN" --no-color deploy --no-such-flag
assert_exit 0 "$DEPLOYCTL_BIN" version
assert_match "$OUT" '[0-9]+\.[0-9]+\.[0-9]+' "version prints a version number"
