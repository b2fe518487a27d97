#!/usr/bin/env bash
# A release that fails (build error, build timeout, bad health, app exits)
# ends FAILED with a reason, exit status 1, and never disturbs the one serving.
source "$(dirname "$0")/lib.sh"
require_binaries

start_and_deploy_hello
v1_pid=$(app_pid $APP v1)
assert_ne "" "$v1_pid" "v1 app process found"

newest() { dctl --json releases | jq -c '.[0]'; }

# still_fine DESCRIPTION: v1 remains PRODUCTION, serving, same process.
still_fine() {
    assert_eq v1 "$(dctl --json status | jq -r .production)" "$1: v1 still PRODUCTION"
    expect_serving $APP "hello from 1" "$1: v1 still serving"
    assert_eq "$v1_pid" "$(app_pid $APP v1)" "$1: v1 app process untouched"
}

# --- build command fails with status 3 -------------------------------------------
write_toml "$REPO" $APP build='echo about to fail; exit 3'
commit_change "$REPO" "Broken build"
assert_exit 1 dctl deploy
r=$(newest)
assert_eq "v2 FAILED" "$(jq -r '"\(.id) \(.state)"' <<<"$r")" "build exit 3: v2 FAILED"
assert_match "$(jq -r .error <<<"$r")" '(status|code)[^0-9]*3([^0-9]|$)' "build exit 3: error mentions status 3"
assert_contains "$OUT$ERR" "about to fail" "build exit 3: the build output reached the user"
still_fine "after build failure"

run dctl --json deploy
assert_eq 1 "$RC" "build exit 3 with --json: exit 1"
d=$(jq -c 'select(.event == "done")' "$OUT_FILE")
assert_eq FAILED "$(jq -r .state <<<"$d")" "--json done.state == FAILED"
assert_match "$(jq -r .error <<<"$d")" '(status|code)[^0-9]*3([^0-9]|$)' "--json done.error mentions status 3"
assert_eq FAILED "$(jq -r 'select(.event == "state") | .state' "$OUT_FILE" | tail -n1)" "last state event is FAILED"

# --- build timeout ----------------------------------------------------------------
# An odd duration, so the leftover check below cannot confuse it with anyone else's sleep.
write_toml "$REPO" $APP build='sleep 29.713 && echo never' build_timeout=1s
commit_change "$REPO" "Slow build"
start=$(date +%s)
assert_exit 1 dctl deploy
took=$(($(date +%s) - start))
assert_true "build timeout: deploy returns well before the sleep would end (${took}s)" test "$took" -lt 15
r=$(newest)
id=$(jq -r .id <<<"$r")
assert_eq FAILED "$(jq -r .state <<<"$r")" "build timeout: $id FAILED"
assert_match "$(jq -r .error <<<"$r")" 'timed out' "build timeout: error says timed out"
no_sleep() { ! pgrep -f 'sleep 29[.]713' >/dev/null; }
if wait_until 3 no_sleep; then pass "build timeout: no leftover sleep process"; else
    fail "build timeout: no leftover sleep process" "still running: $(pgrep -af 'sleep 29[.]713')"
fi
still_fine "after build timeout"

# --- health never OK --------------------------------------------------------------
write_toml "$REPO" $APP health_path=/nothing-here health_timeout=2s
commit_change "$REPO" "Bad health path" VERSION 2
assert_exit 1 dctl deploy
r=$(newest)
id=$(jq -r .id <<<"$r")
assert_eq FAILED "$(jq -r .state <<<"$r")" "health never OK: $id FAILED"
assert_match "$(jq -r .error <<<"$r")" 'health' "health never OK: error mentions health"
no_app() { [[ -z $(pids_in_dir_matching "$(release_dir $APP "$id")" httpd) ]]; }
if wait_until 3 no_app; then pass "health never OK: the failed release's process was stopped"; else
    fail "health never OK: the failed release's process was stopped" "still running: $(pids_in_dir_matching "$(release_dir $APP "$id")" httpd)"
fi
still_fine "after failed health check"

# --- the app exits at once --------------------------------------------------------
write_toml "$REPO" $APP run='echo crashing now; exit 7' health_timeout=5s
commit_change "$REPO" "App exits"
assert_exit 1 dctl deploy
r=$(newest)
id=$(jq -r .id <<<"$r")
assert_eq FAILED "$(jq -r .state <<<"$r")" "app exits at once: $id FAILED"
assert_ne "" "$(jq -r '.error // empty' <<<"$r")" "app exits at once: error says why"
still_fine "after app exit"

# The failures are all kept with their reasons; exactly one PRODUCTION.
assert_eq 1 "$(sqlite3 "$DATA/state.db" "select count(*) from releases where app='hello' and state='PRODUCTION'")" \
    "state.db: exactly one PRODUCTION"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "select count(*) from releases where app='hello' and state in ('QUEUED','BUILDING','PROVISIONING')")" \
    "state.db: nothing left unsettled"

# --- and a good deploy after all that still works ---------------------------------
write_toml "$REPO" $APP
commit_change "$REPO" "Fixed" VERSION 3
assert_exit 0 dctl deploy
expect_serving $APP "hello from 3" "a good deploy after the failures serves the new text"

# --- another program takes the app's port before the app listens on it ------------
# The first start has a program outside the app's process group listen on $PORT,
# then fails to listen there itself, as an app does ("Address already in use").
# The agent finds the port held once the app is stopped and starts it again on
# another port; the second start serves.
cat >"$REPO/start.sh" <<EOF
if [ ! -e "$TEST_TMP/port-taken" ]; then
    touch "$TEST_TMP/port-taken"
    setsid python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
open(sys.argv[2], "w").write(sys.argv[1]); time.sleep(60)' "\$PORT" "$TEST_TMP/holder.port" </dev/null >/dev/null 2>&1 &
    echo \$! >"$TEST_TMP/holder.pid"
    while [ ! -s "$TEST_TMP/holder.port" ]; do sleep 0.05; done
fi
exec busybox httpd -f -p 127.0.0.1:\$PORT -h public
EOF
write_toml "$REPO" $APP run='sh start.sh'
commit_change "$REPO" "Port taken" VERSION 4
assert_exit 0 dctl deploy
assert_contains "$OUT" "was taken by another program before the app listened on it: starting the app again on another port" \
    "port taken: the deploy says the app's port was taken and it starts again"
holder_port=$(cat "$TEST_TMP/holder.port" 2>/dev/null)
mapfile -t started < <(grep -o 'on port [0-9]*' <<<"$OUT" | awk '{print $3}')
assert_eq "2 $holder_port" "${#started[@]} ${started[0]:-}" "port taken: the first start was on the port the other program took"
assert_ne "$holder_port" "${started[1]:-}" "port taken: the second start is on another port"
assert_contains "$OUT" "bind: Address already in use" "port taken: the first start's failure is shown"
expect_serving $APP "hello from 4" "port taken: the app serves after its second start"
kill "$(cat "$TEST_TMP/holder.pid")" 2>/dev/null || true
