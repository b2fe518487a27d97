#!/usr/bin/env bash
# An app's lifecycle on a real agent: deployctl apps, stop (503 page, kept
# stopped across a kill -9 of the agent), start, restart (a new process, no
# request dropped), a deploy that starts a stopped app again, destroy (refused
# without a terminal or --yes; with --yes everything of the app gone while
# another app keeps serving and keeps its blobs), and deploy-agent down.
source "$(dirname "$0")/lib.sh"
require_binaries

start_and_deploy_hello "hello v1 served"
HELLO_REPO=$REPO
printf 'hello-secret-value\n' | dctl env set --secret API_TOKEN >/dev/null
commit_change "$HELLO_REPO" "v2" VERSION 2
assert_exit 0 dctl deploy
expect_serving hello "hello from 2" "hello v2 served"

# A second app: its VERSION file ("1") is the same blob as hello v1's.
make_app_repo other
OTHER_REPO=$REPO
printf 'other-secret-value\n' | dctl env set --secret API_TOKEN >/dev/null
assert_exit 0 dctl deploy
expect_serving other "hello from 1" "other v1 served"
REPO=$HELLO_REPO

# ------------------------------------------------------------------ apps
assert_exit 0 dctl apps
assert_match "$OUT" 'hello +v2 +running +http://hello\.localhost' "apps: hello v2 running, its URL"
assert_match "$OUT" 'other +v1 +running' "apps: other v1 running"
assert_exit 0 dctl apps --json
assert_jq "$(grep '"app":"hello"' <<<"$OUT")" \
    '.event == "app" and .production == "v2" and .state == "running" and (.url | test("hello.localhost"))' \
    "apps --json: one app event per line, hello v2 running"
assert_eq 2 "$(grep -c '"event":"app"' <<<"$OUT")" "apps --json: two lines, one per app"

# ------------------------------------------------------------------ stop
old_pid=$(app_pid hello v2)
assert_ne "" "$old_pid" "hello v2 has a process"
assert_exit 0 dctl stop
assert_contains "$OUT" "Stopped hello v2" "stop says what it stopped"
assert_true "hello's process is gone after stop" wait_until 10 dead "$old_pid"
assert_eq 503 "$(fetch_code hello)" "a stopped app answers 503 through the proxy"
assert_contains "$(fetch hello)" "hello is stopped; start it with: deployctl start" "the 503 says why, as text"
html=$(curl -s --max-time 5 -H "Host: hello.localhost" -H "Accept: text/html" "http://127.0.0.1:$PROXY_PORT/")
assert_contains "$html" "<h1>hello is stopped</h1>" "a browser gets an HTML page"
expect_serving other "hello from 1" "other keeps serving while hello is stopped"
assert_eq 1 "$(sqlite3 "$DATA/state.db" "SELECT stopped FROM apps WHERE name = 'hello'")" "apps.stopped = 1 in state.db"
assert_exit 0 dctl apps --json
assert_jq "$(grep '"app":"hello"' <<<"$OUT")" '.state == "stopped"' "apps shows hello stopped"
assert_exit 0 dctl status
assert_contains "$OUT" "is stopped" "status shows hello stopped"
assert_exit 0 dctl --json stop
assert_jq "$OUT" '.event == "stopped" and .app == "hello" and .release == "v2" and .changed == false' \
    "stop --json of a stopped app: a stopped event, changed false"
assert_exit 0 dctl stop
assert_contains "$OUT" "already stopped" "stop of a stopped app: exit 0, says so"

# Stays stopped when the agent dies and comes back.
kill_agent -9
restart_agent
sleep 2 # the supervisor looks every 0.5 s
assert_eq 503 "$(fetch_code hello)" "still 503 after kill -9 and a restart of the agent"
assert_eq "" "$(pids_under "$(release_dir hello v2)")" "no process of hello runs after the agent restart"
expect_serving other "hello from 1" "other serves after the agent restart"

# ------------------------------------------------------------------ start
assert_exit 0 dctl start
assert_contains "$OUT" "Started hello v2" "start says what it started"
expect_serving hello "hello from 2" "hello serves again after start"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "SELECT stopped FROM apps WHERE name = 'hello'")" "apps.stopped = 0 after start"
assert_exit 0 dctl start
assert_contains "$OUT" "already running" "start of a running app: exit 0, says so"

# ------------------------------------------------------------------ restart
old_pid=$(app_pid hello v2)
codes=$TEST_TMP/restart.codes
(for i in $(seq 1 40); do fetch_code hello; echo; sleep 0.05; done) >"$codes" &
loader=$!
assert_exit 0 dctl restart
assert_contains "$OUT" "Restarted hello v2" "restart says so"
wait "$loader"
new_pid=$(app_pid hello v2)
assert_ne "$old_pid" "$new_pid" "restart: a new process serves (pid $old_pid -> $new_pid)"
assert_true "restart: the old process is gone" wait_until 10 dead "$old_pid"
expect_serving hello "hello from 2" "hello serves after restart"
assert_eq "" "$(grep -v '^200$' "$codes" | grep . || true)" "no request failed during the restart ($(grep -c . "$codes") requests)"

# ------------------------------------------------------------------ deploy starts a stopped app
assert_exit 0 dctl stop
commit_change "$HELLO_REPO" "v3" VERSION 3
assert_exit 0 dctl deploy
assert_contains "$OUT" "was stopped" "a deploy of a stopped app says it starts it again"
expect_serving hello "hello from 3" "the deploy serves the stopped app again"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "SELECT stopped FROM apps WHERE name = 'hello'")" "apps.stopped = 0 after the deploy"
assert_exit 0 dctl stop
assert_exit 0 dctl rollback
expect_serving hello "hello from 2" "a rollback of a stopped app serves it again (v2)"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "SELECT stopped FROM apps WHERE name = 'hello'")" "apps.stopped = 0 after the rollback"
assert_exit 0 dctl rollback v3
expect_serving hello "hello from 3" "back on v3"

# ------------------------------------------------------------------ scopes
deploy_token=$("$AGENT_BIN" token create --data-dir "$DATA" --app hello --scope deploy --name it-deploy)
api POST /v1/apps/hello/restart -H "Authorization: Bearer $deploy_token"
assert_eq 200 "$API_STATUS" "a deploy token for hello may restart it"
api DELETE /v1/apps/hello -H "Authorization: Bearer $deploy_token"
assert_eq 403 "$API_STATUS" "a deploy token may not destroy the app (admin scope)"
expect_serving hello "hello from 3" "nothing removed by the refused DELETE"

# ------------------------------------------------------------------ destroy
assert_exit 2 dctl destroy hello </dev/null
assert_contains "$ERR" "--yes" "destroy without a terminal names --yes"
expect_serving hello "hello from 3" "nothing removed without --yes"
assert_eq 3 "$(sqlite3 "$DATA/state.db" "SELECT count(*) FROM releases WHERE app = 'hello'")" "hello's releases kept without --yes"

# On a terminal (script(1) gives it one) the app's name must be typed.
on_tty() { script -qec "$(printf '%q ' "$@")" /dev/null; }
if command -v script >/dev/null; then
    run on_tty "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" --no-color destroy hello <<<"hellp"
    assert_eq 2 "$RC" "destroy on a terminal with the wrong name typed: exit 2"
    assert_contains "$OUT" "Type the app's name to confirm" "destroy on a terminal asks for the app's name"
    assert_contains "$OUT" "nothing was destroyed" "a wrong name destroys nothing"
    expect_serving hello "hello from 3" "hello still serves after the wrong name"
else
    log "script(1) not found: the terminal prompt is not checked"
fi

hello_pid=$(app_pid hello v3)
redactors=$(pids_in_dir_matching "$DATA/apps/hello" log-redact)
assert_ne "" "$redactors" "a log-redact writer runs for hello"
blob_of() { printf '%s\n' "$1" | sha256sum | cut -d' ' -f1; }
blob_path() { echo "$DATA/blobs/${1:0:2}/$1"; }
only_hello=$(blob_of 3)   # hello v3's VERSION
shared=$(blob_of 1)       # hello v1's and other v1's VERSION
assert_true "hello's VERSION 3 blob is stored" test -f "$(blob_path "$only_hello")"
assert_true "the shared VERSION 1 blob is stored" test -f "$(blob_path "$shared")"
# Another deploy in progress asks about hello v2's VERSION blob: pinned, destroy leaves it.
pinned=$(blob_of 2)
assert_true "hello's VERSION 2 blob is stored" test -f "$(blob_path "$pinned")"
api POST /v1/blobs/missing -H 'Content-Type: application/json' --data-binary "{\"digests\":[\"$pinned\"]}"
assert_eq 200 "$API_STATUS" "blobs/missing pins what it is asked about"

assert_exit 0 dctl destroy hello --yes
assert_contains "$OUT" "Destroyed hello" "destroy says what it removed"
assert_true "hello's process is gone" wait_until 10 dead "$hello_pid"
for pid in $redactors; do
    assert_true "hello's log-redact (pid $pid) is gone" wait_until 10 dead "$pid"
done
assert_false "apps/hello is removed (releases, logs)" test -e "$DATA/apps/hello"
for pair in releases:app release_secrets:app env:app app_keys:app switches:app apps:name; do
    assert_eq 0 "$(sqlite3 "$DATA/state.db" "SELECT count(*) FROM ${pair%:*} WHERE ${pair#*:} = 'hello'")" \
        "no row of hello left in ${pair%:*}"
done
assert_eq 1 "$(sqlite3 "$DATA/state.db" "SELECT count(*) FROM transitions WHERE app = 'hello' AND detail LIKE 'app destroyed%'")" \
    "transitions records the destroy"
assert_eq 1 "$(sqlite3 "$DATA/state.db" "SELECT count(*) FROM api_audit WHERE method = 'DELETE' AND path = '/v1/apps/hello' AND status = 200")" \
    "the API audit log records the DELETE"
assert_false "hello's own blob is removed" test -e "$(blob_path "$only_hello")"
assert_true "hello's blob pinned by a deploy in progress stays" test -f "$(blob_path "$pinned")"
assert_contains "$OUT" "kept (another app or a deploy in progress uses them)" "destroy says what it kept"
assert_true "the blob other's release uses survives" test -f "$(blob_path "$shared")"
while read -r digest; do
    [[ -f $(blob_path "$digest") ]] || fail "every blob of other survives" "missing $digest"
done <"$DATA/apps/other/manifests/v1.blobs"
pass "every blob of other survives"
assert_eq 404 "$(fetch_code hello)" "hello.localhost answers the proxy's unknown-app 404"
assert_contains "$(fetch hello)" "no app is deployed at hello.localhost" "the unknown-app answer"
expect_serving other "hello from 1" "other keeps serving after hello is destroyed"
assert_exit 2 dctl destroy hello --yes
assert_contains "$ERR" "no app named" "destroy of an unknown app: not found"

# A deploy after destroy starts at v1 again.
assert_exit 0 dctl deploy
assert_contains "$OUT" "v1 is live" "hello deployed again starts at v1"
expect_serving hello "hello from 3" "hello serves again after the new deploy"

# ------------------------------------------------------------------ deploy-agent down
agent_pid=$AGENT_PID
proxy=$(proxy_pid)
apps_pids="$(app_pid hello v1) $(app_pid other v1)"
redactors=$(pids_in_dir_matching "$DATA/apps/other" log-redact)
assert_ne "" "$redactors" "a log-redact writer runs for other"
assert_exit 0 "$AGENT_BIN" down --data-dir "$DATA"
assert_contains "$OUT" "stopped deploy-agent (pid $agent_pid)" "down names the agent it stopped"
for pid in $agent_pid $proxy $apps_pids $redactors; do
    assert_true "down: pid $pid is gone" wait_until 10 dead "$pid"
done
assert_eq "" "$(pids_under "$DATA")" "down: nothing runs in the data dir"
assert_exit 0 "$AGENT_BIN" down --data-dir "$DATA"
assert_contains "$OUT" "nothing runs" "down again: says nothing runs, exit 0"
assert_exit 2 "$AGENT_BIN" down --data-dir "$TEST_TMP/no-such-dir"
assert_contains "$ERR" "no agent's data dir" "down on a wrong dir: a clear error"

# The apps come back with the agent.
restart_agent
serves_hello_3() { [[ $(fetch hello) == "hello from 3" ]]; }
assert_true "hello serves again after serve" wait_until 15 serves_hello_3

# ------------------------------------------------------------------ several hosts
FIRST_URL=$AGENT_URL FIRST_PROXY=$PROXY_PORT
start_agent second
SECOND_URL=$AGENT_URL SECOND_PROXY=$PROXY_PORT
both() { "$DEPLOYCTL_BIN" -C "$HELLO_REPO" --host "$FIRST_URL" --host "$SECOND_URL" --no-color "$@"; }
# The first host already serves this tree (nothing to do there); the second gets the
# fleet's next id, v2.
assert_exit 0 both deploy
assert_contains "$OUT" "already serves" "the first host already serves the tree"
assert_exit 0 both stop
assert_contains "$OUT" "[$FIRST_URL] ==> Stopped hello" "stop with two hosts: reported for the first"
assert_contains "$OUT" "[$SECOND_URL] ==> Stopped hello" "stop with two hosts: reported for the second"
assert_eq "503 503" "$(fetch_code hello / "$FIRST_PROXY") $(fetch_code hello / "$SECOND_PROXY")" "both hosts answer 503"
assert_exit 0 both apps
assert_match "$OUT" "\\[$FIRST_URL\\] hello +v1 +stopped" "apps with two hosts: the first host's apps"
assert_match "$OUT" "\\[$SECOND_URL\\] hello +v2 +stopped" "apps with two hosts: the second host's apps"
assert_exit 0 both start
assert_eq "hello from 3|hello from 3" "$(fetch hello / "$FIRST_PROXY")|$(fetch hello / "$SECOND_PROXY")" "start serves on both hosts"
if command -v script >/dev/null; then
    run on_tty "$DEPLOYCTL_BIN" -C "$HELLO_REPO" --host "$FIRST_URL" --host "$SECOND_URL" --no-color destroy hello <<<"hello"
    assert_eq 0 "$RC" "destroy on a terminal with the app's name typed: exit 0 ($(tail -n 3 "$OUT_FILE"))"
else
    assert_exit 0 both destroy hello --yes
fi
assert_eq "404 404" "$(fetch_code hello / "$FIRST_PROXY") $(fetch_code hello / "$SECOND_PROXY")" "destroy removes the app from both hosts"
log "all $CHECKS checks passed"
