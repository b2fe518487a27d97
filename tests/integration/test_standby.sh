#!/usr/bin/env bash
# [deploy] standby and drains off the deploy lock (docs/deploy-toml.md): the replaced
# release's web keeps running, unrouted, so that a rollback within the window is a routing
# switch of the same process; a deploy right after a deploy does not wait for the previous
# release's drain; standby = "0s" stops it after the drain, and a rollback then starts it
# again (cold); the window ends by itself.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent
APP=hello
make_app_repo hello standby=10m drain=200ms
assert_exit 0 dctl deploy
commit_change "$REPO" "v2" VERSION 2
assert_exit 0 dctl deploy
expect_serving $APP "hello from 2" "v2 serves"

release_json() { acurl -s "$AGENT_URL/v1/apps/hello/releases" | jq -c ".[] | select(.id == \"$1\")"; }
standby_of() { release_json "$1" | jq -r '.standby'; }
# replaced_in_standby A B WHAT: deploys vA, then vB; vA is in standby (WHAT says so).
replaced_in_standby() {
    commit_change "$REPO" "v$1" VERSION "$1"
    assert_exit 0 dctl deploy
    commit_change "$REPO" "v$2" VERSION "$2"
    assert_exit 0 dctl deploy
    assert_eq true "$(standby_of "v$1")" "$3"
}
port_of() { release_json "$1" | jq -r '.port // empty'; }
v1_port=$(port_of v1)
[[ -n $v1_port ]] && pass "v1 keeps running after its drain (port $v1_port)" || fail "v1 keeps running after its drain" "no port"
assert_eq true "$(standby_of v1)" "the API: v1 is in standby"
assert_exit 0 dctl --json releases
assert_eq "true false" "$(jq -r '[.[] | select(.id == "v1" or .id == "v2") | .standby] | reverse | join(" ")' <<<"$OUT")" \
    "releases --json: v1 is in standby, v2 (serving) is not"
assert_exit 0 dctl --json status
assert_eq true "$(jq -r 'select(.event == "status") | .releases[] | select(.id == "v1") | .standby' <<<"$OUT")" \
    "status --json: v1 is in standby"
v1_pid=$(listener_pid "$v1_port")
assert_ne "" "$v1_pid" "v1's process listens on its port"
assert_match "$(curl -s "http://127.0.0.1:$v1_port/")" "hello from 1" "v1 still answers on its own port"
assert_exit 0 dctl releases
assert_contains "$OUT" "standby: still running" "releases marks the standby release"
assert_exit 0 dctl status
assert_contains "$OUT" "standby" "status marks it too"

# --- a warm rollback: a routing switch of the same process -------------------------------
start=$(date +%s%N)
assert_exit 0 dctl rollback
took=$((($(date +%s%N) - start) / 1000000))
expect_serving $APP "hello from 1" "the rollback serves v1 at once"
assert_contains "$(cat "$DATA/apps/hello/logs/v1.ndjson")" "warm rollback" "the rollback says it was warm"
assert_eq "$v1_pid" "$(listener_pid "$v1_port")" "v1 is the same process, on the same port"
((took < 3000)) && pass "warm rollback took ${took} ms" || fail "a warm rollback is quick" "took ${took} ms"
assert_eq true "$(standby_of v2)" "v2, replaced by the rollback, is in standby in turn"
assert_exit 0 dctl rollback v2
expect_serving $APP "hello from 2" "and back to v2, warm too"
assert_contains "$(cat "$DATA/apps/hello/logs/v2.ndjson")" "warm rollback" "the second rollback was warm"
# Variables changed since v1 started: a rollback starts it again, with them.
assert_exit 0 dctl env set STANDBY_CHECK=1
assert_exit 0 dctl rollback
expect_serving $APP "hello from 1" "after env set, the rollback serves v1"
assert_contains "$(cat "$DATA/apps/hello/logs/v1.ndjson")" "variables changed since v1 started" "after env set, the rollback to v1 was cold"
[[ $(listener_pid "$(port_of v1)") != "$v1_pid" ]] && pass "v1 runs as a new process" || fail "v1 runs as a new process" "the same pid"
assert_exit 0 dctl rollback v2

# --- a deploy right after a deploy does not wait for the drain --------------------------
# drain = 30s, and a client holding a connection to the replaced release: its drain lasts
# the whole 30 s.
make_app_repo hello standby=10m drain=30s
commit_change "$REPO" "v3" VERSION 3
assert_exit 0 dctl deploy
v3_port=$(port_of v3)
exec 7<>"/dev/tcp/127.0.0.1/$v3_port"
commit_change "$REPO" "v4" VERSION 4
assert_exit 0 dctl deploy
expect_serving $APP "hello from 4" "v4 serves"
# deploy_beside_drain N DRAINING PORT WHEN: deploys vN (its commit made here) in under 15 s,
# while DRAINING, whose drain lasts 30 s, still drains on PORT.
deploy_beside_drain() {
    commit_change "$REPO" "v$1" VERSION "$1"
    local start took
    start=$(date +%s%N)
    assert_exit 0 dctl deploy
    took=$((($(date +%s%N) - start) / 1000000))
    expect_serving $APP "hello from $1" "v$1 serves"
    ((took < 15000)) && pass "a deploy $4 took ${took} ms ($2's drain lasts 30 s)" ||
        fail "a deploy $4 does not wait for $2's drain" "took ${took} ms"
    [[ -n $(listener_pid "$3") ]] && pass "$2 still drains (its client's connection is open)" ||
        fail "$2 still drains" "it stopped"
}
deploy_beside_drain 5 v3 "$v3_port" "right after a deploy"
exec 7>&-

# --- standby = "0s": stopped after the drain; a rollback starts it again ----------------
make_app_repo hello standby=0s drain=200ms
commit_change "$REPO" "v6" VERSION 6
assert_exit 0 dctl deploy
v6_port=$(port_of v6)
commit_change "$REPO" "v7" VERSION 7
assert_exit 0 dctl deploy
v6_gone() { [[ -z $(port_of v6) ]]; }
wait_until 10 v6_gone && pass "standby = 0s: v6 stops after its drain" ||
    fail "standby = 0s: v6 stops after its drain" "port $(port_of v6)"
[[ -z $(listener_pid "$v6_port") ]] && pass "nothing listens on v6's port" || fail "nothing listens on v6's port" "a process does"
assert_eq false "$(standby_of v6)" "v6 is not in standby"
assert_exit 0 dctl rollback
expect_serving $APP "hello from 6" "a cold rollback serves v6"
assert_not_contains "$(cat "$DATA/apps/hello/logs/v6.ndjson")" "warm rollback" "and was cold (started again)"

# --- the window ends by itself -----------------------------------------------------------
make_app_repo hello standby=2s drain=200ms
replaced_in_standby 8 9 "standby = 2s: v8 is in standby at first"
v8_gone() { [[ -z $(port_of v8) ]]; }
wait_until 15 v8_gone && pass "v8 stops once its 2 s of standby are over" || fail "v8 stops once its standby is over" "still running"
assert_contains "$(<"$AGENT_LOG")" "stays in standby for 2s" "the agent logs the standby"

# --- deployctl stop stops the standby release too ------------------------------------------
make_app_repo hello standby=10m drain=200ms
replaced_in_standby 10 11 "v10 is in standby"
v10_port=$(port_of v10)
assert_exit 0 dctl stop
assert_eq false "$(standby_of v10)" "deployctl stop: v10 no longer in standby"
[[ -z $(listener_pid "$v10_port") ]] && pass "deployctl stop: v10's process is gone" || fail "deployctl stop: v10's process is gone" "it still listens"

# --- an agent restart keeps a standby release for the rest of its window ----------------
assert_exit 0 dctl start
make_app_repo hello standby=10m drain=200ms
replaced_in_standby 12 13 "v12 is in standby"
v12_port=$(port_of v12)
assert_ne "" "$v12_port" "v12 has a port"
v12_pid=$(listener_pid "$v12_port")
assert_ne "" "$v12_pid" "v12's process listens on its port"
in_standby() { grep -q "hello $1 stays in standby" "$AGENT_LOG"; }
wait_until 10 in_standby v12 || fail "v12's drain ends" "no standby line in the agent log"
kill_agent -9
restart_agent
assert_eq true "$(standby_of v12)" "after kill -9 and a restart: v12 is still in standby"
assert_contains "$(<"$AGENT_LOG")" "hello v12 is still running: kept in standby for the rest of its window" "the restarted agent says it keeps v12"
assert_exit 0 dctl rollback
expect_serving $APP "hello from 12" "the rollback after the restart serves v12"
assert_contains "$(cat "$DATA/apps/hello/logs/v12.ndjson")" "warm rollback" "and was warm"
assert_eq "$v12_pid" "$(listener_pid "$v12_port")" "v12 is the process that ran before the restart"
# Variables changed, then the agent restarted: v13 (now in standby) started before the
# change, so a rollback to it is cold.
assert_eq true "$(standby_of v13)" "v13, replaced by the rollback, is in standby"
wait_until 10 in_standby v13 || fail "v13's drain ends" "no standby line in the agent log"
assert_exit 0 dctl env set STANDBY_RESTART=1
kill_agent -TERM
restart_agent
assert_eq true "$(standby_of v13)" "after a restart: v13 is still in standby"
assert_exit 0 dctl rollback v13
expect_serving $APP "hello from 13" "the rollback serves v13"
assert_contains "$(cat "$DATA/apps/hello/logs/v13.ndjson")" "variables changed since v13 started" "variables changed before the restart: the rollback was cold"

# A window that ends after the restart still ends.
make_app_repo hello standby=3s drain=200ms
replaced_in_standby 14 15 "standby = 3s: v14 is in standby"
wait_until 10 in_standby v14 || fail "v14's drain ends" "no standby line in the agent log"
kill_agent -9
restart_agent
v14_gone() { [[ -z $(port_of v14) ]]; }
wait_until 15 v14_gone && pass "v14 stops when its window ends, after the restart" || fail "v14 stops when its window ends" "still running"

# --- only the release the last switch replaced stays warm ----------------------------------
make_app_repo hello standby=10m drain=200ms
replaced_in_standby 16 17 "v16 is in standby"
wait_until 10 in_standby v16 || fail "v16's drain ends" "no standby line in the agent log"
v16_port=$(port_of v16)
commit_change "$REPO" "v18" VERSION 18
assert_exit 0 dctl deploy
left_standby() { grep -q "hello $1 leaves standby: a later switch replaced another release" "$AGENT_LOG"; }
wait_until 10 left_standby v16 && pass "v16 leaves its standby once v17 is replaced" ||
    fail "v16 leaves its standby once v17 is replaced" "no such line in the agent log"
v16_gone() { [[ -z $(port_of v16) ]]; }
wait_until 10 v16_gone && pass "v16 is stopped" || fail "v16 is stopped" "port $(port_of v16)"
[[ -z $(listener_pid "$v16_port") ]] && pass "nothing listens on v16's port" || fail "nothing listens on v16's port" "a process does"
assert_eq false "$(standby_of v16)" "v16 is no longer in standby"
wait_until 10 in_standby v17 || fail "v17's drain ends" "no standby line in the agent log"
assert_eq true "$(standby_of v17)" "v17, the release v18 replaced, is in standby"
assert_exit 0 dctl rollback
expect_serving $APP "hello from 17" "the rollback serves v17"
assert_contains "$(cat "$DATA/apps/hello/logs/v17.ndjson")" "warm rollback" "and was warm"

# --- an agent killed -9 while a release drains: after its restart, the next deploy does not
# wait for that drain either (the leftover drains off the app's deploy lock, as after a switch)
make_app_repo hello standby=0s drain=30s
commit_change "$REPO" "v19" VERSION 19
assert_exit 0 dctl deploy
v19_port=$(port_of v19)
assert_ne "" "$v19_port" "v19 has a port"
exec 8<>"/dev/tcp/127.0.0.1/$v19_port" # held open: v19's drain lasts the whole 30 s
commit_change "$REPO" "v20" VERSION 20
assert_exit 0 dctl deploy
kill_agent -9
restart_agent
assert_contains "$(<"$AGENT_LOG")" "draining leftover hello v19" "the restarted agent drains v19, left draining"
deploy_beside_drain 21 v19 "$v19_port" "right after the restart"
exec 8>&-
