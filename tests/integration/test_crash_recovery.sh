#!/usr/bin/env bash
# kill -9 of the agent drops no request and loses no release; a restarted
# agent re-adopts the running app (no duplicate), fails an interrupted build,
# and restarts an app process that died.
source "$(dirname "$0")/lib.sh"
require_binaries

start_and_deploy_hello
v1_pid=$(app_pid $APP v1)
assert_ne "" "$v1_pid" "v1 app process found by its port"
proxy1=$(proxy_pid)
assert_ne "" "$proxy1" "proxy.pid written"
assert_true "proxy process alive" alive "$proxy1"

# --- the agent dies: the app keeps serving ----------------------------------------
kill_agent -9
pass "agent killed with SIGKILL"
expect_all_ok $APP 20 "with the agent dead"
expect_serving $APP "hello from 1" "agent dead: still the v1 text"
assert_true "agent dead: proxy still alive" alive "$proxy1"
assert_true "agent dead: app still alive" alive "$v1_pid"

# --- restart on the same data dir: re-adopts, no duplicate ------------------------
restart_agent
sleep 1 # give a buggy agent the chance to start a duplicate
assert_eq v1 "$(dctl --json status | jq -r .production)" "after restart: v1 still PRODUCTION"
assert_eq "$v1_pid" "$(app_pid $APP v1)" "after restart: the same app process serves v1 (pid $v1_pid)"
assert_eq 1 "$(pids_in_dir_matching "$(release_dir $APP v1)" httpd | wc -l)" "after restart: exactly one app process for v1"
assert_eq "$proxy1" "$(proxy_pid)" "after restart: the same proxy process"
nproxies=0
for p in $(pgrep -x deploy-proxy || true); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qE -- "$DATA|:$PROXY_PORT( |$)"; then nproxies=$((nproxies + 1)); fi
done
assert_true "after restart: at most one deploy-proxy for this proxy port ($nproxies)" test "$nproxies" -le 1
expect_serving $APP "hello from 1" "after restart: serving v1"

commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dctl deploy
expect_serving $APP "hello from 2" "after restart: a new deploy (v2) works"
assert_eq v2 "$(dctl --json status | jq -r .production)" "after restart: v2 PRODUCTION"

# --- the agent dies in the middle of a build ---------------------------------------
write_toml "$REPO" $APP build="sleep 5 && $DEFAULT_BUILD"
commit_change "$REPO" "Slow build" VERSION 3
assert_exit 0 dctl deploy --no-follow
building() { [[ $(release_state $APP v3) == BUILDING ]]; }
if wait_until 10 building; then pass "v3 reaches BUILDING"; else
    fail "v3 reaches BUILDING" "state: $(release_state $APP v3)"
fi
kill_agent -9
pass "agent killed with SIGKILL during v3's build"
expect_serving $APP "hello from 2" "agent dead mid-build: v2 still serving"
restart_agent
settled() { [[ $(release_state $APP v3) == FAILED ]]; }
if wait_until 5 settled; then pass "after restart: interrupted v3 is FAILED"; else
    fail "after restart: interrupted v3 is FAILED" "state: $(release_state $APP v3)"
fi
assert_match "$(release_field $APP v3 error)" 'interrupted' "v3's error says interrupted"
assert_eq v2 "$(dctl --json status | jq -r .production)" "after interrupted build: v2 still PRODUCTION"
expect_serving $APP "hello from 2" "after interrupted build: v2 still serving"
sleep 6 # let a build that was not stopped run to its end: it must not be promoted
assert_eq FAILED "$(release_state $APP v3)" "v3 stays FAILED"
expect_serving $APP "hello from 2" "v2 still serving after the orphaned build's time"

# --- the app process dies: the agent restarts it ----------------------------------
v2_pid=$(app_pid $APP v2)
assert_ne "" "$v2_pid" "v2 app process found by its port"
kill -9 "$v2_pid"
pass "v2 app process (pid $v2_pid) killed with SIGKILL"
serving_again() { [[ $(fetch $APP /) == "hello from 2" ]]; }
if wait_until 10 serving_again; then pass "v2 serves again within 10 s"; else
    fail "v2 serves again within 10 s" "last answer: $(fetch_code $APP /)"
fi
new_pid=$(app_pid $APP v2)
assert_ne "" "$new_pid" "v2 has an app process again"
assert_ne "$v2_pid" "$new_pid" "it is a new process"
assert_eq PRODUCTION "$(release_state $APP v2)" "v2 still PRODUCTION after the restart of its process"
assert_eq 1 "$(pids_in_dir_matching "$(release_dir $APP v2)" httpd | wc -l)" "exactly one app process for v2"
