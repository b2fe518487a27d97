#!/usr/bin/env bash
# kill -9 of an agent running containers: the app keeps serving, the restarted
# agent re-adopts the same container (no duplicate, no restart) and deploys
# again; a build interrupted by the kill is FAILED ("interrupted") and its
# docker build is not left running.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

AGENT_ENGINE=docker
start_agent
APP=crecover
# [logs] max_size = "64k": the adopted container's log must still rotate at it.
make_container_repo $APP extra=$'[logs]\nmax_size = "64k"'

assert_exit 0 dctl deploy
expect_serving $APP "$APP site 1" "v1 served"
name1=$(container_name $APP v1)
cid1=$(cinspect "$name1" '{{.Id}}')
pid1=$(cinspect "$name1" '{{.State.Pid}}')
started1=$(cinspect "$name1" '{{.State.StartedAt}}')
assert_ne "" "$cid1" "v1's container $name1 exists ($(containers_summary $APP))"
assert_match "$pid1" '^[1-9][0-9]*$' "v1's container has a main process on the host ($pid1)"
proxy1=$(proxy_pid)
assert_ne "" "$proxy1" "proxy.pid written"

# --- the agent dies: the container keeps serving through the proxy -------------------------
kill_agent -9
pass "agent killed with SIGKILL"
expect_all_ok $APP 20 "with the agent dead"
expect_serving $APP "$APP site 1" "agent dead: still v1's site"
assert_eq "$cid1 true" "$(cinspect "$name1" '{{.Id}} {{.State.Running}}')" "agent dead: v1's container still running"

# --- restart on the same data dir: the same container is adopted --------------------------
restart_agent
sleep 1 # give a buggy agent the chance to re-create or restart the container
assert_eq v1 "$(dctl --json status | jq -r .production)" "after restart: v1 still PRODUCTION"
assert_eq "$cid1 true" "$(cinspect "$name1" '{{.Id}} {{.State.Running}}')" "after restart: the same container id runs v1"
assert_eq "$pid1" "$(cinspect "$name1" '{{.State.Pid}}')" "after restart: the same main process (pid $pid1), not restarted"
assert_eq "$started1" "$(cinspect "$name1" '{{.State.StartedAt}}')" "after restart: the container's StartedAt is unchanged"
assert_eq "$cid1" "$(app_containers $APP)" "after restart: exactly one running container for the app, v1's"
assert_eq "$proxy1" "$(proxy_pid)" "after restart: the same proxy process"
expect_serving $APP "$APP site 1" "after restart: serving v1"

# Runtime logs are followed again after the re-adoption.
marker=it-after-restart-$RANDOM$RANDOM
assert_eq 404 "$(fetch_code $APP "/$marker")" "a request for /$marker reaches the container (404)"
# (grep reads everything: grep -q could exit at the match and, under pipefail, the
# producer's SIGPIPE would turn the match into a miss.)
logs_have() { dctl logs "${@:2}" 2>/dev/null | grep -F -- "$1" >/dev/null; }
if wait_until 5 logs_have "url:/$marker"; then pass "after restart: new runtime output reaches \`deployctl logs\`"; else
    fail "after restart: new runtime output reaches \`deployctl logs\`" "$(dctl logs 2>&1 | tail -n 20)"
fi
# ...and rotates as deploy.toml's [logs] says (64k), not at the 10m default: 100 requests
# whose 1,000-character paths the app logs, some 100 KB of output.
long=$(head -c 1000 /dev/zero | tr '\0' r)
for i in $(seq 100); do fetch_code $APP "/$long$i" >/dev/null; done
v1_log=$DATA/apps/$APP/logs/v1.app.log
rotated() { [[ -e $v1_log.1.zst ]]; }
if wait_until 10 rotated; then pass "after restart: the adopted container's log rotates at [logs] max_size (64k)"; else
    fail "after restart: the adopted container's log rotates at [logs] max_size (64k)" "$(ls -l "$v1_log"*)"
fi

commit_change "$REPO" "Site 2" site/index.html "$APP site 2"
assert_exit 0 dctl deploy
expect_serving $APP "$APP site 2" "after restart: a new deploy (v2) works"
assert_eq v2 "$(dctl --json status | jq -r .production)" "after restart: v2 PRODUCTION"
one_running() { [[ $(running_count $APP) == 1 ]]; }
if wait_until 5 one_running; then pass "after v2's drain: exactly one running container"; else
    fail "after v2's drain: exactly one running container" "containers: $(containers_summary $APP)"
fi
assert_eq "" "$(release_containers $APP v1)" "after v2's drain: the adopted v1 container was stopped"

# --- the agent dies in the middle of a docker build ---------------------------------------
# An odd duration, so the leftover checks cannot confuse it with anyone else's sleep.
write_dockerfile "$REPO" steps='RUN ["/bin/busybox","sleep","20.713"]'
commit_change "$REPO" "Slow build" site/index.html "$APP site 3"
assert_exit 0 dctl deploy --no-follow
v3_dir=$(release_dir $APP v3)
building() { [[ $(release_state $APP v3) == BUILDING ]] && pgrep -f 'sleep 20[.]713' >/dev/null; }
if wait_until 15 building; then pass "v3 is BUILDING and its RUN step (sleep 20.713) is running"; else
    fail "v3 is BUILDING and its RUN step (sleep 20.713) is running" "state: $(release_state $APP v3)" \
        "build processes: $(pgrep -af -- "$v3_dir" | paste -sd'|')"
fi
assert_ne "" "$(pgrep -f -- "$v3_dir" || true)" "test setup: a docker build with v3's dir as context is running"
kill_agent -9
pass "agent killed with SIGKILL during v3's docker build"
expect_serving $APP "$APP site 2" "agent dead mid-build: v2 still serving"
restart_agent
settled() { [[ $(release_state $APP v3) == FAILED ]]; }
if wait_until 10 settled; then pass "after restart: interrupted v3 is FAILED"; else
    fail "after restart: interrupted v3 is FAILED" "state: $(release_state $APP v3)"
fi
assert_match "$(release_field $APP v3 error)" 'interrupted' "v3's error says interrupted"
no_build() { [[ -z $(pgrep -f -- "$v3_dir") ]]; }
if wait_until 10 no_build; then pass "after restart: no docker build of v3 left (pgrep -f on its context dir)"; else
    fail "after restart: no docker build of v3 left (pgrep -f on its context dir)" "$(pgrep -af -- "$v3_dir")"
fi
no_sleep() { ! pgrep -f 'sleep 20[.]713' >/dev/null; }
if wait_until 10 no_sleep; then pass "after restart: v3's build step (sleep 20.713) is gone"; else
    fail "after restart: v3's build step (sleep 20.713) is gone" "$(pgrep -af 'sleep 20[.]713')"
fi
assert_eq v2 "$(dctl --json status | jq -r .production)" "after interrupted build: v2 still PRODUCTION"
expect_serving $APP "$APP site 2" "after interrupted build: v2 still serving"
assert_false "after interrupted build: no image $(image_ref $APP v3)" image_exists "$(image_ref $APP v3)"
assert_eq "" "$(release_containers $APP v3 -a)" "after interrupted build: no container of v3"

# --- and the agent deploys again after all that --------------------------------------------
write_dockerfile "$REPO"
commit_change "$REPO" "Site 4" site/index.html "$APP site 4"
assert_exit 0 dctl deploy
expect_serving $APP "$APP site 4" "after the interrupted build: a new deploy (v4) works"
assert_eq FAILED "$(release_state $APP v3)" "v3 stays FAILED"
if wait_until 5 one_running; then pass "after v4's drain: exactly one running container"; else
    fail "after v4's drain: exactly one running container" "containers: $(containers_summary $APP)"
fi

# --- a container in standby across an agent restart ---------------------------------------
# [deploy] standby: v4's container keeps running, unrouted, after v5 replaces it; a restarted
# agent keeps it for the rest of its window, a rollback to it is warm, its logs are followed.
write_container_toml "$REPO" $APP standby=10m
commit_change "$REPO" "Site 5" site/index.html "$APP site 5"
assert_exit 0 dctl deploy
expect_serving $APP "$APP site 5" "v5 serves"
v4_standby() { grep -q "$APP v4 stays in standby" "$AGENT_LOG"; }
wait_until 15 v4_standby || fail "v4's drain ends in standby" "no standby line in the agent log"
name4=$(container_name $APP v4)
cid4=$(cinspect "$name4" '{{.Id}}')
kill_agent -9
restart_agent
assert_contains "$(<"$AGENT_LOG")" "$APP v4 is still running: kept in standby for the rest of its window" "after restart: v4's container is kept in standby"
assert_exit 0 dctl rollback
expect_serving $APP "$APP site 4" "the rollback after the restart serves v4"
assert_contains "$(cat "$DATA/apps/$APP/logs/v4.ndjson")" "warm rollback" "and was warm"
assert_eq "$cid4 true" "$(cinspect "$name4" '{{.Id}} {{.State.Running}}')" "v4 is the container that ran before the restart"
marker=it-standby-$RANDOM$RANDOM
assert_eq 404 "$(fetch_code $APP "/$marker")" "a request for /$marker reaches v4's container (404)"
if wait_until 5 logs_have "url:/$marker"; then pass "v4's output after the warm rollback reaches \`deployctl logs\`"; else
    fail "v4's output after the warm rollback reaches \`deployctl logs\`" "$(dctl logs 2>&1 | tail -n 20)"
fi
