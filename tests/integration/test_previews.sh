#!/usr/bin/env bash
# Preview environments (docs/git.md) with real parts: a repository the test made, served to
# the agent as a file:// remote holding the providers' pull-request refs (refs/pull/N/head,
# refs/merge-requests/N/head), GitHub-, GitLab- and Gitea-shaped pull-request deliveries
# signed by the test, curl through the real deploy-proxy. A pull request opened into the
# deploy branch is deployed as app hello-pr-N and served at hello-pr-N.localhost and
# pr-N.hello.DOMAIN, with the app's variables, [preview.env] and only the secrets
# [preview] secrets lists; new commits update it; past [preview] max the oldest goes;
# closed or merged removes it entirely; forks, other base branches and apps without
# [preview] deploy nothing; destroying the app destroys its previews.
source "$(dirname "$0")/lib.sh"
require_binaries
for tool in git openssl curl jq sqlite3; do
    command -v "$tool" >/dev/null || { log "SKIP: needs $tool"; exit 77; }
done

start_agent
ORIGIN=$TEST_TMP/origin/hello.git
# The run command shows the variables the app was started with at /env.
RUN='echo "$GREETING ${DB_PASSWORD:-no-db-password} ${API_KEY:-no-api-key}" > public/env; exec busybox httpd -f -p 127.0.0.1:$PORT -h public'
make_app_repo hello run="$RUN" domains='"shop.test"'
git clone -q --bare "$REPO" "$ORIGIN"
git -C "$REPO" remote add origin "$ORIGIN"
GIT_SECTION=$(printf '\n[git]\nbranch = "main"\nurl = "file://%s"\n' "$ORIGIN")
echo "$GIT_SECTION" >>"$REPO/deploy.toml"
commit_change "$REPO" "Fetch from file://"
git -C "$REPO" push -q origin main
assert_exit 0 dctl env set GREETING=production
assert_exit 0 dctl env set --secret DB_PASSWORD=production-db-password
assert_exit 0 dctl env set --secret API_KEY=the-api-key
assert_exit 0 dctl deploy
expect_serving hello "hello from 1" "v1 deployed by hand"
assert_eq "production production-db-password the-api-key" "$(fetch hello /env)" "production has every variable"
assert_exit 0 dctl hooks secret
SECRET=$OUT

hmac() { openssl dgst -sha256 -hmac "$1" <"$2" | awk '{print $NF}'; }
# deliver PROVIDER EVENT DELIVERY-ID BODY-FILE: posts a delivery signed as the provider
# signs it; sets CODE and ANSWER.
deliver() {
    local provider=$1 event=$2 id=$3 body=$4
    local -a headers=(-H "Content-Type: application/json")
    case $provider in
    github) headers+=(-H "X-GitHub-Event: $event" -H "X-GitHub-Delivery: $id"
        -H "X-Hub-Signature-256: sha256=$(hmac "$SECRET" "$body")") ;;
    gitlab) headers+=(-H "X-Gitlab-Event: $event" -H "X-Gitlab-Event-UUID: $id" -H "X-Gitlab-Token: $SECRET") ;;
    gitea) headers+=(-H "X-Gitea-Event: $event" -H "X-Gitea-Delivery: $id" -H "X-Gitea-Signature: $(hmac "$SECRET" "$body")") ;;
    esac
    CODE=$(curl -s -o "$TEST_TMP/answer" -w '%{http_code}' -X POST "${headers[@]}" \
        --data-binary @"$body" "$AGENT_URL/v1/hooks/$provider/hello")
    ANSWER=$(cat "$TEST_TMP/answer")
}
# pr_event FILE ACTION NUMBER HEAD [BASE] [HEAD-REPO] [MERGED]: a GitHub/Gitea pull_request body.
pr_event() {
    jq -n --arg action "$2" --argjson number "$3" --arg head "$4" --arg base "${5:-main}" \
        --arg from "${6:-it/hello}" --argjson merged "${7:-false}" \
        '{action: $action, number: $number,
          pull_request: {number: $number, merged: $merged,
                         head: {sha: $head, ref: "feature", repo: {full_name: $from}},
                         base: {ref: $base, repo: {full_name: "it/hello"}}}}' >"$1"
}
# mr_event FILE ACTION IID HEAD: a GitLab Merge Request Hook body.
mr_event() {
    jq -n --arg action "$2" --argjson iid "$3" --arg head "$4" \
        '{object_kind: "merge_request",
          object_attributes: {iid: $iid, action: $action, target_branch: "main",
                              source_project_id: 12, target_project_id: 12,
                              last_commit: {id: $head}}}' >"$1"
}
# open_pr REF VERSION: a commit on a branch of its own pushed to the origin's REF (as the
# provider keeps a pull request's head); prints nothing, sets HEAD_SHA.
open_pr() {
    git -C "$REPO" checkout -q -B "pr-$2" main
    commit_change "$REPO" "Pull request $2" VERSION "$2"
    git -C "$REPO" push -q -f origin "HEAD:$1"
    HEAD_SHA=$(git -C "$REPO" rev-parse HEAD)
    git -C "$REPO" checkout -q main
}
serves() { [[ $(fetch "$1") == "$2" ]]; }
release_count() { sqlite3 "$DATA/state.db" "select count(*) from releases where app='$1'"; }

# --- without [preview] in the serving deploy.toml, a pull request deploys nothing --------
open_pr refs/pull/1/head pr1
pr_event "$TEST_TMP/pr1.json" opened 1 "$HEAD_SHA"
deliver github pull_request p-0001 "$TEST_TMP/pr1.json"
assert_eq 200 "$CODE" "no [preview]: 200 ($ANSWER)"
assert_eq ignored "$(jq -r .result <<<"$ANSWER")" "no [preview]: ignored"
assert_contains "$(jq -r .detail <<<"$ANSWER")" "previews are off" "no [preview]: says why"
assert_eq 0 "$(release_count hello-pr-1)" "no [preview]: no preview app"

# --- [preview] on: max 2, API_KEY shared, GREETING overridden -----------------------------
printf '\n[preview]\nmax = 2\nsecrets = ["API_KEY"]\n\n[preview.env]\nGREETING = "preview"\n' >>"$REPO/deploy.toml"
commit_change "$REPO" "Previews on"
git -C "$REPO" push -q origin main
assert_exit 0 dctl deploy
expect_serving hello "hello from 1" "v2 (previews on) serves"

# --- GitHub: a pull request opened deploys hello-pr-3 -------------------------------------
open_pr refs/pull/3/head pr3
pr_event "$TEST_TMP/pr3.json" opened 3 "$HEAD_SHA"
deliver github pull_request p-0003 "$TEST_TMP/pr3.json"
assert_eq 202 "$CODE" "pull request 3 opened: 202 ($ANSWER)"
assert_eq hello-pr-3 "$(jq -r .preview <<<"$ANSWER")" "the answer names the preview app"
assert_eq v1 "$(jq -r .release <<<"$ANSWER")" "the answer names its release"
assert_contains "$(jq -r .url <<<"$ANSWER")" "hello-pr-3.localhost" "the answer gives its URL"
wait_until 30 serves hello-pr-3 "hello from pr3" || fail "hello-pr-3 serves the pull request" "$(fetch hello-pr-3)"
pass "hello-pr-3 serves the pull request's head"
assert_eq "hello from pr3" "$(fetch_host pr-3.hello.shop.test)" "served at pr-3.hello.DOMAIN too"
expect_serving hello "hello from 1" "production is untouched"
assert_eq "preview no-db-password the-api-key" "$(fetch hello-pr-3 /env)" \
    "the preview: [preview.env] over the app's variable, no unlisted secret, the listed one"
assert_eq "" "$(sqlite3 "$DATA/state.db" "select name from env where app='hello-pr-3' and name='DB_PASSWORD'")" \
    "the unlisted secret is not stored for the preview"
assert_eq "$HEAD_SHA" "$(git --git-dir "$DATA/git/hello.git" rev-parse refs/previews/3)" \
    "the agent fetched refs/pull/3/head into refs/previews/3"

# --- new commits on the pull request update its preview ----------------------------------
open_pr refs/pull/3/head pr3b
pr_event "$TEST_TMP/pr3b.json" synchronize 3 "$HEAD_SHA"
deliver github pull_request p-0004 "$TEST_TMP/pr3b.json"
assert_eq 202 "$CODE" "synchronize: 202 ($ANSWER)"
assert_eq v2 "$(jq -r .release <<<"$ANSWER")" "synchronize: the preview's next release"
wait_until 30 serves hello-pr-3 "hello from pr3b" || fail "the preview serves the new head" "$(fetch hello-pr-3)"
pass "the preview serves the new head"
deliver github pull_request p-0004 "$TEST_TMP/pr3b.json"
assert_eq true "$(jq -r .duplicate <<<"$ANSWER")" "a replayed delivery is not deployed twice"
assert_eq 2 "$(release_count hello-pr-3)" "still two releases of the preview"

# --- GitLab: a merge request opened ---------------------------------------------------------
open_pr refs/merge-requests/4/head mr4
mr_event "$TEST_TMP/mr4.json" open 4 "$HEAD_SHA"
deliver gitlab "Merge Request Hook" g-0004 "$TEST_TMP/mr4.json"
assert_eq 202 "$CODE" "gitlab merge request 4 opened: 202 ($ANSWER)"
wait_until 30 serves hello-pr-4 "hello from mr4" || fail "hello-pr-4 serves the merge request" "$(fetch hello-pr-4)"
pass "hello-pr-4 serves the merge request (fetched from refs/merge-requests/4/head)"

# --- what deploys nothing: a fork, another base branch, an action that is not code ----------
COUNT=$(sqlite3 "$DATA/state.db" "select count(*) from releases")
open_pr refs/pull/5/head pr5
pr_event "$TEST_TMP/fork.json" opened 5 "$HEAD_SHA" main someone/hello
deliver github pull_request p-0005 "$TEST_TMP/fork.json"
assert_eq ignored "$(jq -r .result <<<"$ANSWER")" "a fork's pull request: ignored"
assert_contains "$(jq -r .detail <<<"$ANSWER")" "comes from someone/hello: [preview] forks = true" "a fork: says why"
pr_event "$TEST_TMP/base.json" opened 5 "$HEAD_SHA" release
deliver github pull_request p-0006 "$TEST_TMP/base.json"
assert_contains "$(jq -r .detail <<<"$ANSWER")" "is into release, not the deploy branch (main)" "another base branch: ignored"
pr_event "$TEST_TMP/labeled.json" labeled 3 "$HEAD_SHA"
deliver github pull_request p-0007 "$TEST_TMP/labeled.json"
assert_contains "$(jq -r .detail <<<"$ANSWER")" "\"labeled\" is not deployed" "a labeled action: ignored"
echo '{"action":"opened","number":"x"}' >"$TEST_TMP/bad.json"
deliver github pull_request p-0008 "$TEST_TMP/bad.json"
assert_eq 400 "$CODE" "a pull request event without a number: 400"
assert_eq "$COUNT" "$(sqlite3 "$DATA/state.db" "select count(*) from releases")" "none of these deployed anything"

# --- a pull request whose deploy.toml names another app: refused, nothing deployed ------------
git -C "$REPO" checkout -q -B other main
sed -i 's/^app = "hello"/app = "other"/' "$REPO/deploy.toml"
commit_change "$REPO" "Another app"
git -C "$REPO" push -q -f origin HEAD:refs/pull/9/head
OTHER_SHA=$(git -C "$REPO" rev-parse HEAD)
git -C "$REPO" checkout -q main
pr_event "$TEST_TMP/other.json" opened 9 "$OTHER_SHA"
deliver github pull_request p-0009 "$TEST_TMP/other.json"
assert_eq 422 "$CODE" "a deploy.toml of another app: 422 ($ANSWER)"
assert_contains "$ANSWER" 'app = \"other\" but the pull request is one of app \"hello\"' "says why"
assert_eq 0 "$(release_count hello-pr-9)" "no preview app for it"

# --- an app of the preview's name that is not a preview is never deployed over ------------
git -C "$REPO" checkout -q -B squatter main
sed -i 's/^app = "hello"/app = "hello-pr-8"/' "$REPO/deploy.toml"
commit_change "$REPO" "An app of its own" VERSION squatter
assert_exit 0 dctl deploy
git -C "$REPO" checkout -q main
open_pr refs/pull/8/head pr8
pr_event "$TEST_TMP/pr8.json" opened 8 "$HEAD_SHA"
deliver github pull_request p-0013 "$TEST_TMP/pr8.json"
assert_eq 409 "$CODE" "an app named hello-pr-8 that is not a preview: 409 ($ANSWER)"
assert_contains "$ANSWER" "exists and is not a preview of hello" "says why"
expect_serving hello-pr-8 "hello from squatter" "that app keeps serving"
assert_exit 0 dctl destroy hello-pr-8 --yes

# --- a preview whose build fails: its release fails, production and the others serve ------
git -C "$REPO" checkout -q -B broken main
sed -i 's/^command = "echo \\"building.*/command = "echo broken >\&2; exit 3"/' "$REPO/deploy.toml"
commit_change "$REPO" "Broken build" VERSION broken
git -C "$REPO" push -q -f origin HEAD:refs/pull/3/head
BROKEN_SHA=$(git -C "$REPO" rev-parse HEAD)
git -C "$REPO" checkout -q main
pr_event "$TEST_TMP/broken.json" synchronize 3 "$BROKEN_SHA"
deliver gitea pull_request t-0003 "$TEST_TMP/broken.json"
assert_eq 202 "$CODE" "gitea: a broken build answers 202 with its release ($ANSWER)"
BROKEN=$(jq -r .release <<<"$ANSWER")
failed() { [[ $(release_state hello-pr-3 "$BROKEN") == FAILED ]]; }
wait_until 30 failed || fail "the broken preview release fails" "$(release_state hello-pr-3 "$BROKEN")"
expect_serving hello-pr-3 "hello from pr3b" "the preview keeps serving its last good release"
expect_serving hello "hello from 1" "production keeps serving"

# --- deployctl previews ---------------------------------------------------------------------
assert_exit 0 dctl --json previews
assert_jq "$OUT" '.event == "previews" and .app == "hello" and (.previews | length) == 2' "previews --json: two previews"
assert_jq "$OUT" '.previews[0].number == 3 and .previews[0].app == "hello-pr-3" and .previews[0].release == "'"$BROKEN"'" and .previews[0].state == "FAILED"' \
    "previews --json: pull request 3, its last release and that release's state"
assert_jq "$OUT" '.previews[1].number == 4 and .previews[1].state == "PRODUCTION" and .previews[1].ref == "refs/merge-requests/4/head" and (.previews[1].url | test("hello-pr-4.localhost")) and .previews[1].domains == ["pr-4.hello.shop.test"]' \
    "previews --json: merge request 4, serving, its URL and domain"
assert_exit 0 dctl previews
assert_match "$OUT" '#4 +hello-pr-4 +[0-9a-f]{12} +v1 +PRODUCTION +http://hello-pr-4.localhost:[0-9]+/ pr-4.hello.shop.test' "previews: a row per preview"

# --- past [preview] max = 2 the oldest goes, and the delivery says so ------------------------
open_pr refs/pull/6/head pr6
pr_event "$TEST_TMP/pr6.json" opened 6 "$HEAD_SHA"
deliver github pull_request p-0010 "$TEST_TMP/pr6.json"
assert_eq 202 "$CODE" "a third preview: 202 ($ANSWER)"
assert_contains "$(jq -r '.removed[0]' <<<"$ANSWER")" "preview hello-pr-3 removed (the oldest of more than [preview] max = 2)" \
    "the answer says the oldest preview was removed"
wait_until 30 serves hello-pr-6 "hello from pr6" || fail "hello-pr-6 serves" "$(fetch hello-pr-6)"
assert_eq 0 "$(release_count hello-pr-3)" "the oldest preview's releases are gone"
assert_false "the oldest preview's directory is gone" test -e "$DATA/apps/hello-pr-3"
assert_ne "hello from pr3b" "$(fetch hello-pr-3)" "the oldest preview is no longer served"
assert_exit 0 dctl hooks ls
assert_contains "$OUT" "preview hello-pr-3 removed (the oldest of more than [preview] max = 2)" "hooks ls: the delivery log says so"

# --- closed and merged remove their previews entirely ----------------------------------------
mr_event "$TEST_TMP/mr4-close.json" close 4 "$(git --git-dir "$ORIGIN" rev-parse refs/merge-requests/4/head)"
deliver gitlab "Merge Request Hook" g-0005 "$TEST_TMP/mr4-close.json"
assert_eq 200 "$CODE" "merge request 4 closed: 200 ($ANSWER)"
assert_eq removed "$(jq -r .result <<<"$ANSWER")" "closed: removed"
pr_event "$TEST_TMP/pr6-merged.json" closed 6 "$(git --git-dir "$ORIGIN" rev-parse refs/pull/6/head)" main it/hello true
deliver github pull_request p-0011 "$TEST_TMP/pr6-merged.json"
assert_contains "$(jq -r .detail <<<"$ANSWER")" "preview hello-pr-6 removed (pull request 6 merged)" "merged: removed"
for gone in hello-pr-4 hello-pr-6; do
    assert_eq 0 "$(release_count $gone)" "$gone: no release left"
    assert_false "$gone: its directory is gone" test -e "$DATA/apps/$gone"
    assert_eq 404 "$(fetch_code $gone)" "$gone: no longer routed"
done
assert_false "refs/previews/6 is gone from the agent's repository" \
    git --git-dir "$DATA/git/hello.git" rev-parse -q --verify refs/previews/6
assert_exit 0 dctl --json previews
assert_jq "$OUT" '.previews == []' "previews: none left"
assert_exit 0 dctl previews
assert_contains "$OUT" "no preview environments for hello" "previews: says there are none"
expect_serving hello "hello from 1" "production serves through all of it"

# --- destroying the app destroys its previews -----------------------------------------------
open_pr refs/pull/7/head pr7
pr_event "$TEST_TMP/pr7.json" reopened 7 "$HEAD_SHA"
deliver github pull_request p-0012 "$TEST_TMP/pr7.json"
assert_eq 202 "$CODE" "reopened: 202"
wait_until 30 serves hello-pr-7 "hello from pr7" || fail "hello-pr-7 serves" "$(fetch hello-pr-7)"
assert_exit 0 dctl --json destroy hello --yes
assert_jq "$OUT" '.previews == ["hello-pr-7"]' "destroy: names the previews it destroyed"
assert_eq 0 "$(release_count hello-pr-7)" "destroy: the preview's releases are gone"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "select count(*) from previews")" "destroy: no preview is left recorded"
assert_eq 404 "$(fetch_code hello-pr-7)" "destroy: the preview is no longer routed"
