#!/usr/bin/env bash
# The deploy loop a user lives in: deploy, redeploy unchanged (0 bytes, nothing to do;
# --force makes a release anyway), change and deploy again; the old release goes INACTIVE
# and its process stops.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent
make_app_repo hello domains='"hello.example.test"'
APP=hello
first_proxy=$(proxy_pid)
assert_ne "" "$first_proxy" "the agent wrote proxy/proxy.pid"

# --- first deploy, followed as NDJSON --------------------------------------------
assert_exit 0 dctl --json deploy
cp "$OUT_FILE" "$TEST_TMP/deploy1.ndjson"
J=$TEST_TMP/deploy1.ndjson
all_json() { jq -e -c . "$1" >/dev/null 2>&1; }
assert_true "deploy --json prints only JSON lines" all_json "$J"
assert_eq "" "$(jq -r 'select(has("event") | not) | "x"' "$J")" "every NDJSON line has an \"event\""

assert_eq 1 "$(jq -s '[.[] | select(.event == "upload")] | length >= 1 | if . then 1 else 0 end' "$J")" \
    "first deploy reports an upload event"
up=$(jq -s -c '[.[] | select(.event == "upload")] | last' "$J")
assert_jq "$up" 'has("files") and has("bytes_total") and has("bytes_sent") and has("blobs_total") and has("blobs_missing")' \
    "upload has files, bytes_total, bytes_sent, blobs_total, blobs_missing"
assert_eq 3 "$(jq -r '.files' <<<"$up")" "upload counts the 3 committed files (deploy.toml, VERSION, .gitignore)"
assert_jq "$up" '.bytes_sent > 0' "first deploy sends bytes (bytes_sent > 0)"
assert_jq "$up" '.blobs_missing > 0' "first deploy misses blobs (blobs_missing > 0)"
assert_jq "$up" '.bytes_sent == .bytes_total' "bytes_sent equals bytes_total on a first upload"

states=$(jq -r 'select(.event == "state") | .state' "$J" | uniq | paste -sd' ')
assert_eq "QUEUED BUILDING PROVISIONING PRODUCTION" "$states" "state events in order"
assert_eq "v1" "$(jq -r 'select(.event == "state") | .release' "$J" | sort -u | paste -sd' ')" \
    "every state event names release v1"
assert_contains "$(jq -r 'select(.event == "log" and .stream == "build") | .line' "$J")" "building 1" \
    "a build log line (stream build) carries the build's output"
assert_eq 1 "$(jq -s '[.[] | select(.event == "done")] | length' "$J")" "exactly one done event"
assert_eq "done" "$(tail -n1 "$J" | jq -r .event)" "done is the last event"
done1=$(jq -c 'select(.event == "done")' "$J")
assert_eq v1 "$(jq -r .release <<<"$done1")" "done.release == v1"
assert_eq PRODUCTION "$(jq -r .state <<<"$done1")" "done.state == PRODUCTION"
assert_eq "http://hello.localhost:$PROXY_PORT/" "$(jq -r .url <<<"$done1")" "done.url is the proxy URL"
assert_eq null "$(jq -c .error <<<"$done1")" "done.error is null"

expect_serving $APP "hello from 1" "v1 page served through the proxy"
assert_eq "hello from 1" "$(fetch_host hello.example.test)" "the target's domain routes to the app"
assert_eq "hello from 1" "$(fetch_host HELLO.Example.TEST:$PROXY_PORT)" "Host matching ignores case and port"
other=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: other.example.test" \
    "http://127.0.0.1:$PROXY_PORT/" || true)
assert_eq 404 "$other" "an unknown host gets 404"
assert_not_contains "$(fetch_host other.example.test)" "hello from" "an unknown host never sees another app"
assert_eq 200 "$(fetch_code $APP /healthz)" "health path served through the proxy"
assert_eq 404 "$(fetch_code nosuchapp /)" "unknown Host gets 404 from the proxy"
assert_eq PRODUCTION "$(release_state $APP v1)" "API: v1 is PRODUCTION"
assert_eq PRODUCTION "$(sqlite3 "$DATA/state.db" "select state from releases where app='hello' and id='v1'")" \
    "state.db: v1 is PRODUCTION"
assert_eq "$first_proxy" "$(proxy_pid)" "the proxy the agent started at boot is still the one running (no crash/restart)"
assert_true "release dir exists" test -d "$(release_dir $APP v1)"
assert_true "event log exists" test -s "$DATA/apps/$APP/logs/v1.ndjson"

# --- redeploy unchanged: nothing travels, nothing is created ------------------------
assert_exit 0 dctl --json deploy
J2=$TEST_TMP/deploy2.ndjson
cp "$OUT_FILE" "$J2"
up2=$(jq -s -c '[.[] | select(.event == "upload")] | last' "$J2")
assert_eq 0 "$(jq -r .bytes_sent <<<"$up2")" "unchanged redeploy: bytes_sent == 0"
assert_eq 0 "$(jq -r .blobs_missing <<<"$up2")" "unchanged redeploy: blobs_missing == 0"
assert_eq "$(jq -r .bytes_total <<<"$up")" "$(jq -r .bytes_total <<<"$up2")" "unchanged redeploy: same bytes_total"
assert_eq "v1 PRODUCTION" "$(jq -r 'select(.event == "unchanged") | "\(.release) \(.state)"' "$J2")" \
    "unchanged redeploy: v1 already serves it (an unchanged event)"
assert_eq "v1" "$(dctl --json releases | jq -r '[.[].id] | join(" ")')" "unchanged redeploy: no release created"
assert_exit 0 dctl --json deploy --force
assert_eq "v2 PRODUCTION" "$(jq -r 'select(.event == "done") | "\(.release) \(.state)"' "$OUT_FILE")" \
    "unchanged redeploy with --force creates v2 and it reaches PRODUCTION"
v2_pid=$(app_pid $APP v2)
assert_ne "" "$v2_pid" "v2 app process found by its port"

# --- change, commit, deploy (human output) ----------------------------------------
commit_change "$REPO" "Bump to 2" VERSION 2
assert_exit 0 dctl deploy
assert_contains "$OUT$ERR" "v3" "human deploy output names the release"
expect_serving $APP "hello from 2" "v3 serves the new VERSION text"

run dctl --json releases
assert_eq 0 "$RC" "releases --json exits 0"
assert_eq "v3 v2 v1" "$(jq -r '.[].id' <<<"$OUT" | paste -sd' ')" "releases --json: newest first"
assert_eq "PRODUCTION INACTIVE INACTIVE" "$(jq -r '.[].state' <<<"$OUT" | paste -sd' ')" \
    "releases --json: v3 PRODUCTION, v2 and v1 INACTIVE"
assert_jq "$OUT" 'all(.[]; has("id") and has("state") and has("created_at") and has("commit") and has("message") and has("error"))' \
    "release objects have id,state,created_at,commit,message,error"
assert_eq "$(git -C "$REPO" rev-parse HEAD)" "$(jq -r '.[0].commit' <<<"$OUT")" "v3 records the HEAD commit"
assert_eq "Bump to 2" "$(jq -r '.[0].message' <<<"$OUT")" "v3 records the commit message"
assert_match "$(jq -r '.[0].created_at' <<<"$OUT")" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$' "created_at is RFC 3339 UTC"

if wait_until 5 dead "$v2_pid"; then pass "old app process (v2, pid $v2_pid) stopped after the drain"; else
    fail "old app process (v2, pid $v2_pid) stopped after the drain" "still running 5 s after v3 went PRODUCTION"
fi
assert_eq 0 "$(pids_in_dir_matching "$(release_dir $APP v2)" httpd | wc -l)" "no process left running in v2's dir"

run dctl --json status
assert_eq 0 "$RC" "status --json exits 0"
assert_eq hello "$(jq -r .app <<<"$OUT")" "status: app"
assert_eq v3 "$(jq -r .production <<<"$OUT")" "status: production == v3"
assert_eq "http://hello.localhost:$PROXY_PORT/" "$(jq -r .url <<<"$OUT")" "status: url"

run dctl status
assert_eq 0 "$RC" "status (human) exits 0"
assert_contains "$OUT" "v3" "status (human) names the production release"

run dctl -q deploy
assert_eq 0 "$RC" "-q deploy exits 0"
assert_true "-q deploy prints at most one line (the URL) on stdout" test "$(grep -c . "$OUT_FILE" || true)" -le 1

# --- only the committed tree travels; --dirty adds uncommitted changes ------------
echo 9 >"$REPO/VERSION"
echo "do not ship" >"$REPO/notes.tmp" # ignored by .gitignore
assert_exit 0 dctl deploy
expect_serving $APP "hello from 2" "uncommitted VERSION change: the committed text is deployed"
# git's status of the working tree is read while the tree uploads: its count comes last.
assert_eq "warning: 1 uncommitted change was not included (commit them, or pass --dirty)" \
  "$(tail -n 1 <<<"$ERR")" "the uncommitted change is counted, once the deployment is done"
id=$(dctl --json releases | jq -r '.[0].id')
assert_false "ignored notes.tmp is not in the release ($id)" test -e "$(release_dir $APP "$id")/notes.tmp"
assert_exit 0 dctl deploy --dirty
expect_serving $APP "hello from 9" "deploy --dirty: the uncommitted VERSION is deployed"
id=$(dctl --json releases | jq -r '.[0].id')
assert_false "deploy --dirty: ignored notes.tmp is still not in the release ($id)" \
    test -e "$(release_dir $APP "$id")/notes.tmp"
