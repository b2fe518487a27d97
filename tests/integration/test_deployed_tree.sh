#!/usr/bin/env bash
# One rule for the tree: deploy reads deploy.toml from what it deploys (HEAD's tree, or the
# working tree with --dirty) and names any difference from the working copy with the fix;
# `releases` marks --dirty releases; deploying what PRODUCTION already serves (same tree and
# deploy.toml) creates no release unless --force; over two agents, the one that already
# serves it is skipped and the other deploys.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent a
start_agent b
unset DEPLOYCTL_TOKEN # two agents, two admin tokens: each from the credentials file
APP=hello
count_on() { acurl -s "$1/v1/apps/hello/releases" | jq -r 'if type == "array" then length else 0 end' 2>/dev/null || echo 0; }
prod_on() { acurl -s "$1/v1/apps/hello" | jq -r '.production // empty' 2>/dev/null || true; }
AGENT_URL=$A_URL PROXY_PORT=$A_PROXY_PORT DATA=$A_DATA

# --- an untracked deploy.toml is not deployed -----------------------------------------
make_app_repo hello hosts="\"$A_URL\"" keep=10 # no pruning: the tests count releases
git -C "$REPO" rm -q --cached deploy.toml
git -C "$REPO" commit -q -m "deploy.toml not committed"
assert_eq "" "$(git -C "$REPO" ls-files deploy.toml)" "test setup: deploy.toml is untracked"
assert_exit 2 dctl deploy
assert_contains "$ERR" "deploy.toml is not committed" "untracked deploy.toml: says it is not committed"
assert_contains "$ERR" "git add deploy.toml && git commit" "untracked deploy.toml: the fix, git add and commit"
assert_contains "$ERR" "or deploy the working tree with --dirty" "untracked deploy.toml: or --dirty"
assert_eq 0 "$(count_on "$A_URL")" "untracked deploy.toml: no release created"

# --- --dirty deploys the working copy; releases marks it ------------------------------
assert_exit 0 dctl deploy --dirty
assert_contains "$OUT" "+dirty" "--dirty: the package line says +dirty"
expect_serving $APP "hello from 1" "--dirty: v1 serves"
assert_exit 0 dctl --json releases
assert_jq "$OUT" '.[0].id == "v1" and .[0].dirty == true' "releases --json: v1 has \"dirty\": true"
assert_exit 0 dctl releases
assert_match "$OUT" "^v1 +PRODUCTION .* [0-9a-f]{7}\+dirty  " "releases: v1's commit is followed by +dirty"

# --- committed: a clean release --------------------------------------------------------
git -C "$REPO" add deploy.toml
commit_change "$REPO" "Commit deploy.toml, version 2" VERSION 2
assert_exit 0 dctl deploy
assert_not_contains "$ERR" "deploy.toml" "committed deploy.toml: no warning about it"
expect_serving $APP "hello from 2" "v2 serves"
assert_exit 0 dctl --json releases
assert_jq "$OUT" '.[0].id == "v2" and .[0].dirty == false and .[1].dirty == true' \
    "releases --json: v2 \"dirty\": false, v1 still true"
assert_exit 0 dctl releases
assert_match "$OUT" "^v2 +PRODUCTION .* [0-9a-f]{7}  " "releases: v2's commit has no +dirty"

# --- the same tree and deploy.toml again: nothing to do --------------------------------
head7=$(git -C "$REPO" rev-parse --short=7 HEAD)
assert_exit 0 dctl deploy
assert_contains "$OUT" "v2 already serves $head7; nothing to do" "redeploy: v2 already serves HEAD; nothing to do"
assert_contains "$OUT" "--force" "redeploy: names --force"
assert_eq 2 "$(count_on "$A_URL")" "redeploy: no release created (2 releases)"
assert_exit 0 dctl --json deploy
assert_eq "unchanged v2 PRODUCTION $(git -C "$REPO" rev-parse HEAD) false" \
    "$(jq -r 'select(.event == "unchanged") | "\(.event) \(.release) \(.state) \(.commit) \(.dirty)"' <<<"$OUT")" \
    "redeploy --json: an unchanged event (release, state, commit, dirty)"
assert_jq "$(jq -c 'select(.event == "unchanged")' <<<"$OUT")" ".url == \"http://hello.localhost:$A_PROXY_PORT/\" and .host == \"$A_URL\"" \
    "redeploy --json: the unchanged event has the URL and the host"
assert_eq 0 "$(jq -s '[.[] | select(.event == "created" or .event == "done")] | length' <<<"$OUT")" \
    "redeploy --json: no created or done event"
assert_eq 2 "$(count_on "$A_URL")" "redeploy --json: still 2 releases"

# An empty commit has the same tree: still nothing to do.
commit_change "$REPO" "An empty commit"
assert_exit 0 dctl deploy
assert_contains "$OUT" "v2 already serves" "an empty commit: the tree is the same, nothing to do"
assert_eq 2 "$(count_on "$A_URL")" "an empty commit: no release created"

assert_exit 0 dctl deploy --force
assert_contains "$OUT" "v3 is live" "--force: v3 is made and goes live"
assert_eq 3 "$(count_on "$A_URL")" "--force: 3 releases"
assert_eq v3 "$(prod_on "$A_URL")" "--force: v3 is PRODUCTION"

# --- a modified tracked deploy.toml: the committed one, and the difference named ----------
sed -i 's/^keep = 10$/keep = 9/' "$REPO/deploy.toml"
line=$(grep -n '^keep = 9$' "$REPO/deploy.toml" | cut -d: -f1)
assert_ne "" "$line" "test setup: keep = 9 in the working copy"
assert_exit 0 dctl deploy
assert_contains "$ERR" "deploy.toml has uncommitted changes (line $line is \`keep = 9\` (committed: \`keep = 10\`)); deploying the committed one (commit it, or deploy with --dirty)" \
    "modified deploy.toml: the warning names the line that differs and the fix"
assert_contains "$OUT" "v3 already serves" "modified deploy.toml: the committed one was used (v3 already serves it)"
assert_eq 3 "$(count_on "$A_URL")" "modified deploy.toml: no release created"

# The working copy's hosts are not used either: the committed deploy.toml's are.
sed -i "s#^hosts = .*#hosts = [\"http://127.0.0.1:$(free_port)\"]#" "$REPO/deploy.toml"
run "$DEPLOYCTL_BIN" -C "$REPO" --no-color deploy --force
assert_eq 0 "$RC" "modified hosts in the working copy: deploy goes to the committed target's host"
assert_eq v4 "$(prod_on "$A_URL")" "modified hosts in the working copy: v4 on the committed host"
git -C "$REPO" checkout -q -- deploy.toml
sed -i 's/^keep = 10$/keep = 9/' "$REPO/deploy.toml"

# --dirty takes the working copy's deploy.toml, and says nothing about it.
assert_exit 0 dctl deploy --dirty
assert_not_contains "$ERR" "deploy.toml has uncommitted changes" "--dirty: no warning about deploy.toml"
assert_eq v5 "$(prod_on "$A_URL")" "--dirty: v5 is PRODUCTION"
assert_eq "$(sha256sum <"$REPO/deploy.toml" | cut -d' ' -f1)" "$(release_field hello v5 config_digest)" \
    "--dirty: v5 was deployed with the working copy's deploy.toml"
assert_eq true "$(release_field hello v5 dirty)" "--dirty: the agent recorded v5 as dirty"

# --- a deleted deploy.toml: the committed one, with how to bring it back ----------------
rm "$REPO/deploy.toml"
assert_exit 0 dctl deploy
assert_contains "$ERR" "deploy.toml is deleted in the working copy; deploying the committed one (git restore deploy.toml brings it back)" \
    "deleted deploy.toml: the warning and the fix"
assert_eq v6 "$(prod_on "$A_URL")" "deleted deploy.toml: v6 made from the committed one"
assert_eq "$(git -C "$REPO" show HEAD:deploy.toml | sha256sum | cut -d' ' -f1)" "$(release_field hello v6 config_digest)" \
    "deleted deploy.toml: v6 has the committed deploy.toml"
git -C "$REPO" checkout -q -- deploy.toml

# --- two agents: the one that already serves it is skipped, the other deploys ------------
sed -i "s#^hosts = .*#hosts = [\"$A_URL\", \"$B_URL\"]#" "$REPO/deploy.toml"
commit_change "$REPO" "Two hosts, version 3" VERSION 3
dc() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color "$@"; }
assert_exit 0 dc --host "$A_URL" deploy
assert_eq v7 "$(prod_on "$A_URL")" "fleet: a deployed alone first (v7)"
a_count=$(count_on "$A_URL")
assert_exit 0 dc deploy
assert_match "$OUT" "\[$A_URL\] ==> v7 already serves [0-9a-f]{7}; nothing to do" "fleet: a says it already serves it"
assert_match "$OUT" "^$A_URL +v7 +PRODUCTION .*already served it: nothing to do" "fleet: a's summary row"
assert_match "$OUT" "^$B_URL +v8 +PRODUCTION " "fleet: b deployed v8, the fleet's next id (summary row)"
assert_contains "$OUT" "2 of 2 hosts live" "fleet: both hosts live"
assert_eq "$a_count" "$(count_on "$A_URL")" "fleet: no release created on a"
assert_eq 1 "$(count_on "$B_URL")" "fleet: one release on b"
expect_serving $APP "hello from 3" "fleet: a serves version 3" "$A_PROXY_PORT"
expect_serving $APP "hello from 3" "fleet: b serves version 3" "$B_PROXY_PORT"

# Both serve it now: nothing to do anywhere, in --json too.
assert_exit 0 dc --json deploy
assert_eq "$(printf '%s\n' "$A_URL v7" "$B_URL v8" | sort | paste -sd' ')" "$(jq -r 'select(.event == "unchanged") | "\(.host) \(.release)"' <<<"$OUT" | sort | paste -sd' ')" \
    "fleet --json: an unchanged event from each host"
assert_jq "$(jq -c 'select(.event == "summary")' <<<"$OUT")" \
    '.ok and ([.hosts[] | select(.state == "PRODUCTION" and (.note | test("nothing to do")))] | length == 2)' \
    "fleet --json: the summary has both hosts PRODUCTION, nothing to do"
assert_eq "$a_count 1" "$(count_on "$A_URL") $(count_on "$B_URL")" "fleet: still no new release anywhere"

# --force deploys on both.
assert_exit 0 dc deploy --force
# One id for the fleet: the highest next id of the two (b had v8, a's next is v8 too).
assert_eq "v9 v9" "$(prod_on "$A_URL") $(prod_on "$B_URL")" "fleet --force: a new release on each host, with one id"

log "all $CHECKS checks passed"
