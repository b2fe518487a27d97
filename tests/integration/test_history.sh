#!/usr/bin/env bash
# One release history per target (docs/design.md §8): a fleet deploy gives one release id on
# every host, even when one host had more releases before; status compares hosts by what
# they serve (commit, tree, deploy.toml), not by ids; `rollback` over several hosts checks
# every host before anything switches and puts them all on the same release; rollback with
# no id follows the switch history (twice in a row returns to where it was), past removed
# releases; `releases` shows when each release served; the API refuses a requested id below
# the app's next one with 409 release_taken.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent a
start_agent b
# Two agents, two admin tokens: deployctl takes each from the credentials file.
unset DEPLOYCTL_TOKEN
# With BREAK_HEALTH=1 (set on one agent only with `env set --host`), /healthz is gone.
BREAKABLE_RUN='if [ "$BREAK_HEALTH" = 1 ]; then rm -f public/healthz; fi; exec busybox httpd -f -p 127.0.0.1:$PORT -h public'
make_app_repo hello hosts="\"$A_URL\", \"$B_URL\"" run="$BREAKABLE_RUN" health_timeout=3s
HELLO=$REPO
dc() { "$DEPLOYCTL_BIN" -C "$HELLO" --no-color "$@"; }
prod_on() { acurl -s "$1/v1/apps/${2:-hello}" | jq -r '.production // empty' 2>/dev/null || true; }
ids_on() { acurl -s "$1/v1/apps/${2:-hello}/releases" | jq -r '[.[].id] | join(" ")' 2>/dev/null || true; }
served_by() { expect_serving hello "$1" "$2: a serves it" "$A_PROXY_PORT"; expect_serving hello "$1" "$2: b serves it" "$B_PROXY_PORT"; }

# --- a fleet deploy gives one id on every host, the highest next free one --------------
# Host a gets two releases of its own first: its next id is v3, b's v1.
assert_exit 0 dc --host "$A_URL" deploy
commit_change "$HELLO" "Version 2" VERSION 2
assert_exit 0 dc --host "$A_URL" deploy
assert_eq v2 "$(prod_on "$A_URL")" "a alone: v2 in production"
assert_eq v3 "$(acurl -s "$A_URL/v1/apps/hello" | jq -r .next_release)" "status object: a's next_release is v3"
run acurl -s -o /dev/null -w '%{http_code}' "$B_URL/v1/apps/hello"
assert_eq 404 "$OUT" "b does not know the app yet"

commit_change "$HELLO" "Version 3" VERSION 3
C3=$(git -C "$HELLO" rev-parse HEAD)
assert_exit 0 dc --json deploy
assert_eq "v3 v3" "$(jq -r 'select(.event == "created") | .release' "$OUT_FILE" | paste -sd' ')" \
    "fleet deploy: both hosts created v3"
assert_eq v3 "$(prod_on "$A_URL")" "fleet deploy: a has v3 in production"
assert_eq v3 "$(prod_on "$B_URL")" "fleet deploy: b has v3 in production (not v1)"
assert_eq "v3" "$(ids_on "$B_URL")" "b's only release is v3"
assert_eq v4 "$(acurl -s "$B_URL/v1/apps/hello" | jq -r .next_release)" "b's next id moved past v3"
served_by "hello from 3" "fleet v3"

assert_exit 0 dc status
assert_contains "$OUT" "in sync: every host that answered serves ${C3:0:7}" "status: the hosts are in sync"
assert_exit 0 dc --json status
assert_jq "$(jq -c 'select(.event == "summary")' "$OUT_FILE")" \
    '.command == "status" and .consistent and ([.hosts[].commit] | unique | length == 1)' \
    "status --json: consistent, one commit"

# --- status compares what hosts serve, not ids -------------------------------------------
# b alone: v4 (Version 4), then the Version 3 commit again as v5: a serves v3, b v5, the same
# commit, tree and deploy.toml.
commit_change "$HELLO" "Version 4" VERSION 4
C4=$(git -C "$HELLO" rev-parse HEAD)
assert_exit 0 dc --host "$B_URL" deploy
git -C "$HELLO" checkout -q "$C3"
assert_exit 0 dc --host "$B_URL" deploy
assert_eq v5 "$(prod_on "$B_URL")" "b alone: the Version 3 commit again, as v5"
assert_exit 0 dc status
assert_match "$OUT" "^$A_URL +v3 ${C3:0:7} +PRODUCTION" "status table: a serves v3 at the commit"
assert_match "$OUT" "^$B_URL +v5 ${C3:0:7} +PRODUCTION" "status table: b serves v5 at the same commit"
assert_contains "$OUT" "in sync" "status: v3 on a and v5 on b with the same content are in sync"
assert_not_contains "$ERR" "differ" "status: no warning that the hosts differ"
assert_exit 0 dc --json status
assert_jq "$(jq -c 'select(.event == "summary")' "$OUT_FILE")" '.consistent and .hosts[1].differs == []' \
    "status --json: consistent under different ids"

# b serves the same commit with uncommitted changes (--dirty): the tree differs.
echo dirty >"$HELLO/VERSION"
assert_exit 0 dc --host "$B_URL" deploy --dirty
git -C "$HELLO" checkout -q -- VERSION
assert_exit 0 dc status
assert_contains "$ERR" "the hosts differ" "status after b's dirty deploy: the hosts differ"
assert_contains "$ERR" "$B_URL serves v6 at ${C3:0:7}+dirty, $A_URL v3 at ${C3:0:7}: the tree differs" \
    "status: which host serves what, and that the tree differs"
assert_exit 0 dc --json status
assert_jq "$(jq -c 'select(.event == "summary")' "$OUT_FILE")" \
    '(.consistent | not) and .hosts[1].differs == ["tree"] and .hosts[1].dirty and (.hosts[0].dirty | not)' \
    "status --json: not consistent, b's tree differs, b dirty"
git -C "$HELLO" checkout -q main

# --- fleet rollback to an id one host lacks: nothing switches anywhere --------------------
assert_exit 2 dc rollback v2
assert_contains "$ERR" "nothing switched: $B_URL has no release v2" "rollback v2: the error names b, which lacks v2"
assert_eq v3 "$(prod_on "$A_URL")" "rollback v2 refused: a still on v3 (it has v2, but nothing switched)"
assert_eq v6 "$(prod_on "$B_URL")" "rollback v2 refused: b still on v6"
assert_exit 2 dc --json rollback v2
assert_jq "$(tail -n1 "$OUT_FILE")" '.event == "error" and .code == "not_found" and .exit_code == 2' \
    "rollback v2 --json: ends with the error event"

# --- fleet rollback with no id when the hosts would go to different releases -------------
# a's previous is v2 (Version 2), b's v5 (Version 3): refused, naming both.
assert_exit 5 dc rollback
assert_contains "$ERR" "the hosts would go back to different releases: $A_URL to v2 (" \
    "rollback: refused, a would go to v2"
assert_contains "$ERR" "$B_URL to v5 (${C3:0:7})" "rollback: ... and b to v5"
assert_eq v3 "$(prod_on "$A_URL")" "hosts disagree: a not switched"
assert_eq v6 "$(prod_on "$B_URL")" "hosts disagree: b not switched"

# --- fleet rollback to an id both have; one of them serves it already --------------------
# b back on v5 alone; then the fleet deploy of Version 4: both get v7 (b's next).
assert_exit 0 dc --host "$B_URL" rollback v5
assert_exit 0 dc deploy
assert_eq v7 "$(prod_on "$A_URL")" "fleet deploy after b's extra releases: a gets v7"
assert_eq v7 "$(prod_on "$B_URL")" "fleet deploy: b gets v7"
served_by "hello from 4" "fleet v7"

# With no id: each host's previous (a v3, b v5: the same commit, tree and deploy.toml).
assert_exit 0 dc rollback
assert_eq v3 "$(prod_on "$A_URL")" "fleet rollback: a back on v3"
assert_eq v5 "$(prod_on "$B_URL")" "fleet rollback: b back on v5 (the same release as a's v3)"
served_by "hello from 3" "fleet rollback"
assert_contains "$OUT" "2 of 2 hosts on the same release" "fleet rollback: the verdict"
# Again: back to where they were, v7 on both.
assert_exit 0 dc rollback
assert_eq "v7 v7" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "a second fleet rollback returns to v7"
served_by "hello from 4" "second fleet rollback"

# Version 5 on both as v8; rollback twice: v7, then v8 again, on both.
commit_change "$HELLO" "Version 5" VERSION 5
assert_exit 0 dc deploy
assert_eq "v8 v8" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "fleet deploy: v8 on both"
assert_exit 0 dc --json rollback
assert_eq "v7 v7" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "fleet rollback: v7 on both"
assert_jq "$(jq -c 'select(.event == "summary")' "$OUT_FILE")" \
    '.command == "rollback" and .ok and ([.hosts[] | select(.release == "v7" and .previous == "v8" and .state == "PRODUCTION")] | length == 2)' \
    "fleet rollback --json: the summary"
assert_exit 0 dc rollback
assert_eq "v8 v8" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "rollback after rollback: v8 on both again"
served_by "hello from 5" "rollback after rollback"

# To an id both have, one host already serving it: only the other switches.
assert_exit 0 dc --host "$A_URL" rollback v7
assert_exit 0 dc rollback v7
assert_contains "$OUT" "[$A_URL] ==> v7 is already live" "rollback v7: a already serves it"
assert_contains "$OUT" "[$B_URL] ==> v7 is live again" "rollback v7: b switched"
assert_eq "v7 v7" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "rollback v7: v7 on both"

# --- releases: which release served when ----------------------------------------------------
assert_exit 0 dc --host "$A_URL" releases
assert_match "$OUT" "^ +served .* to .*serving since " "releases: v7 served, and serves again since"
assert_match "$OUT" "^ +served [0-9-]+ [0-9:]+ to [0-9:]+" "releases: a release that served once"
assert_exit 0 dc --host "$A_URL" --json releases
R=$OUT
assert_jq "$R" '.[] | select(.id == "v7") | (.served | length >= 2) and .served[-1].until == null' \
    "releases --json: v7 served twice and serves now (until null)"
assert_jq "$R" '.[] | select(.id == "v8") | (.served | length == 2) and (.served | all(.until != null))' \
    "releases --json: v8 served twice, both ended"
assert_jq "$R" '[.[] | .served[] | .from | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T")] | all' \
    "releases --json: served from is an RFC 3339 time"

# --- a host whose switch fails: the hosts that switched go back ----------------------------
assert_exit 0 dc --host "$B_URL" env set BREAK_HEALTH=1
assert_exit 1 dc rollback v8
assert_match "$OUT" "^$A_URL +v8 -> v7 +ROLLED_BACK .*put back: v7 is live again" "b fails: a put back on v7 (summary)"
assert_match "$OUT" "^$B_URL +v8 +FAILED " "b fails: b FAILED (summary)"
assert_contains "$ERR" "the rollback failed on $B_URL: rollback to v8 failed" "b fails: the error names b"
assert_contains "$ERR" "1 host put back on the release it served before" "b fails: the error says a was put back"
assert_eq "v7 v7" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "b fails: v7 on both"
served_by "hello from 4" "after the failed rollback"
assert_exit 0 dc --host "$B_URL" env unset BREAK_HEALTH

# --- one host: rollback twice returns to where it was; past removed releases -------------
make_app_repo solo hosts="\"$A_URL\""
SOLO=$REPO
ds() { "$DEPLOYCTL_BIN" -C "$SOLO" --no-color "$@"; }
sprod() { prod_on "$A_URL" solo; }
sfetch() { fetch solo / "$A_PROXY_PORT"; }
assert_exit 0 ds deploy
commit_change "$SOLO" "Version 2" VERSION 2
assert_exit 0 ds deploy
assert_exit 0 ds rollback
assert_eq v1 "$(sprod)" "single host: rollback goes to v1"
assert_exit 0 ds --json status
assert_eq v2 "$(jq -r .previous "$OUT_FILE")" "status --json: previous is v2 (what served before v1)"
assert_exit 0 ds rollback
assert_eq v2 "$(sprod)" "single host: a second rollback returns to v2"
assert_eq "hello from 2" "$(sfetch)" "single host: v2 served again"
assert_exit 0 ds rollback v1
assert_exit 0 ds rollback
assert_eq v2 "$(sprod)" "single host: after rollback v1, rollback returns to v2"

# v3, then v2's removal: rollback goes further back, to v1.
commit_change "$SOLO" "Version 3" VERSION 3
assert_exit 0 ds deploy
assert_exit 0 ds rm v2
assert_exit 0 ds status
assert_contains "$OUT" "(rollback goes back to v1)" "status: rollback would go to v1 (v2 removed)"
assert_exit 0 ds rollback
assert_eq v1 "$(sprod)" "rollback past removed v2: v1"
assert_eq "hello from 1" "$(sfetch)" "v1 served"
# Back on v3; with v1 removed too, nothing is left: the reason says why.
assert_exit 0 ds rollback
assert_eq v3 "$(sprod)" "rollback: back on v3"
assert_exit 0 ds rm v1
assert_exit 5 ds rollback
assert_contains "$ERR" "no earlier release to roll back to: of the releases that served before v3, v1 was removed and v2 was removed" \
    "nothing left: the reason names the removed releases"
assert_eq v3 "$(sprod)" "nothing left: v3 still in production"

# --- the API: a requested id below the app's next one is 409 release_taken ---------------
BLOB=$TEST_TMP/blob
printf 'x\n' >"$BLOB"
DIGEST=$(sha256sum "$BLOB" | cut -d' ' -f1)
AGENT_URL=$A_URL
api PUT "/v1/blobs/$DIGEST" --data-binary "@$BLOB"
assert_eq 201 "$API_STATUS" "API: blob uploaded"
request() {
    jq -cn --arg config "$(cat "$SOLO/deploy.toml")" --arg digest "$DIGEST" --arg release "$1" \
        '{config: $config, manifest: {files: [{path: "VERSION", mode: "file", digest: $digest, size: 2}]},
          commit: "", message: "by hand", release: $release}'
}
api POST /v1/apps/solo/deployments -H 'Content-Type: application/json' --data "$(request v2)"
assert_eq 409 "$API_STATUS" "API: release v2 (below the next id v4) is refused with 409"
assert_jq "$API_BODY" '.error.code == "release_taken" and .next_release == "v4"' \
    "API: code release_taken, and the next free id"
assert_contains "$API_BODY" "the next free one is v4" "API: the message names the next free id"
api POST /v1/apps/solo/deployments -H 'Content-Type: application/json' --data "$(request v3x)"
assert_eq 400 "$API_STATUS" "API: a release that is not an id is 400"
assert_eq "v3" "$(ids_on "$A_URL" solo)" "API: nothing was created by the refused requests"
api POST /v1/apps/solo/deployments -H 'Content-Type: application/json' --data "$(request v10)"
assert_eq 201 "$API_STATUS" "API: v10 (above the next id) is accepted"
assert_jq "$API_BODY" '.release == "v10"' "API: the release is v10"
assert_eq v11 "$(acurl -s "$A_URL/v1/apps/solo" | jq -r .next_release)" "API: the next id follows v10"
settled() { [[ $(release_state solo v10) =~ ^(PRODUCTION|FAILED|INACTIVE)$ ]]; }
assert_true "v10 settles" wait_until 20 settled
