#!/usr/bin/env bash
# examples/hello deploys as shipped: from a fresh git repository of its own
# (what scripts/demo does), and as a subdirectory of a bigger repository.
source "$(dirname "$0")/lib.sh"
require_binaries

EXAMPLE=$REPO_ROOT/examples/hello
start_agent

init_repo() {
    git -C "$1" init -q -b main
    git -C "$1" config user.name "Integration Test"
    git -C "$1" config user.email "it@example.invalid"
    git -C "$1" add -A
    git -C "$1" commit -q -m "$2"
}

# --- a fresh repository holding just the example -----------------------------------
REPO=$TEST_TMP/repos/hello
mkdir -p "$REPO"
cp -a "$EXAMPLE/." "$REPO/"
rm -rf "$REPO/public"
init_repo "$REPO" "hello example"
assert_exit 0 dctl deploy
body=$(fetch hello /)
assert_contains "$body" "hello from $(cat "$EXAMPLE/VERSION")" "example (own repo): the page names the version"
assert_contains "$body" "<html" "example (own repo): an HTML page"
assert_eq 200 "$(fetch_code hello /healthz)" "example (own repo): /healthz answers 200"
printf '%s\n' 2 >"$REPO/VERSION"
git -C "$REPO" commit -q -am "Version 2"
assert_exit 0 dctl deploy
assert_contains "$(fetch hello /)" "hello from 2" "example (own repo): a committed change deploys"
assert_exit 0 dctl rollback
assert_contains "$(fetch hello /)" "hello from $(cat "$EXAMPLE/VERSION")" "example (own repo): rollback"

# --- the example as a subtree of a bigger repository --------------------------------
OUTER=$TEST_TMP/repos/outer
mkdir -p "$OUTER/examples"
cp -a "$EXAMPLE" "$OUTER/examples/hello"
rm -rf "$OUTER/examples/hello/public"
echo "# a bigger project" >"$OUTER/README.md"
echo "not part of the app" >"$OUTER/unrelated.txt"
init_repo "$OUTER" "project with an example"
REPO=$OUTER
# The same files as the own repository's v1: --force, or the agent would have nothing to do.
assert_exit 0 dctl deploy examples/hello --force
assert_eq v3 "$(acurl -s "$AGENT_URL/v1/apps/hello/releases" | jq -r '.[0].id')" "example (subtree): a new release v3"
assert_eq PRODUCTION "$(release_state hello v3)" "example (subtree): v3 PRODUCTION"
assert_contains "$(fetch hello /)" "hello from $(cat "$EXAMPLE/VERSION")" "example (subtree): the page is served"
rel=$(release_dir hello v3)
assert_true "example (subtree): deploy.toml at the release root" test -f "$rel/deploy.toml"
assert_false "example (subtree): files outside the subtree are not packaged" test -e "$rel/unrelated.txt"
