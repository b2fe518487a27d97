#!/usr/bin/env bash
# Builds on the docker engine (docs/build-cache.md): a one-line change to the site rebuilds
# only the layers after the step that copies it (the engine's layer cache; the build log
# says which steps came from it), a tree built before is not built again (its image is
# tagged for the new release: "build reused from vN"), and --rebuild builds.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

AGENT_ENGINE=docker start_agent
APP=cbuild
# No [build] dockerfile: the agent finds ./Dockerfile once the tree is written.
make_container_repo $APP dockerfile=
image_id() { ecli image inspect -f '{{.Id}}' "$(image_ref $APP "$1")" 2>/dev/null || true; }
# The lines of the deploy output after "Step N/M : TEXT", up to the next step.
step_output() { awk -v step="$1" 'index($0, step) { on = 1; next } /Step [0-9]+\/[0-9]+ :/ { on = 0 } on' <<<"$2"; }

assert_exit 0 dctl deploy
expect_serving $APP "$APP site 1" "v1 serves"
V1_TREE=$(git -C "$REPO" rev-parse HEAD^{tree})

# --- a one-line change: the steps before COPY site/ come from the cache ---------------------
commit_change "$REPO" "A one-line change to the site" site/index.html "$APP site 2"
assert_exit 0 dctl deploy
expect_serving $APP "$APP site 2" "v2 serves"
assert_contains "$(step_output ": COPY busybox /bin/busybox" "$OUT")" "Using cache" "one-line change: COPY busybox came from the cache"
assert_contains "$(step_output ': RUN ["/bin/busybox","--install","-s","/bin"]' "$OUT")" "Using cache" "one-line change: the RUN step came from the cache"
assert_not_contains "$(step_output ": COPY site/ /site/" "$OUT")" "Using cache" "one-line change: COPY site/ was built again"
assert_match "$OUT" "image built: [4-9] of [0-9]+ steps from the build cache" "one-line change: the build says how many steps were cached"

# --- v1's tree again: its image is tagged, nothing is built ----------------------------------
git -C "$REPO" read-tree -u --reset "$V1_TREE"
git -C "$REPO" commit -q -m "Back to v1's site"
assert_exit 0 dctl deploy
assert_contains "$OUT" "build reused from v1 (same inputs" "an identical tree: v1's image reused"
assert_not_contains "$OUT" "Step 1/" "an identical tree: no image build"
assert_ne "" "$(image_id v3)" "v3's image exists"
assert_eq "$(image_id v1)" "$(image_id v3)" "v3's image is v1's"
expect_serving $APP "$APP site 1" "v3 serves v1's site"

# --- --rebuild builds (from the layer cache) -------------------------------------------------
assert_exit 0 dctl deploy --rebuild
assert_contains "$OUT" "Step 1/" "--rebuild: the image is built"
assert_not_contains "$OUT" "build reused" "--rebuild: nothing reused"
expect_serving $APP "$APP site 1" "v4 serves"

# --- a base image that changes is a different input ------------------------------------------
# A Dockerfile FROM an image of this test; retagged, the same tree is built again.
BASE=it-base-${IT_RUN_ID,,}
ecli tag "$(image_ref $APP v1)" "$BASE:latest" >/dev/null
write_dockerfile "$REPO"
sed -i "s|^FROM scratch\$|FROM $BASE:latest|" "$REPO/Dockerfile"
commit_change "$REPO" "FROM an image of the test"
assert_exit 0 dctl deploy
TREE=$(git -C "$REPO" rev-parse HEAD^{tree})
commit_change "$REPO" "A change" site/index.html "$APP site 6"
assert_exit 0 dctl deploy
git -C "$REPO" read-tree -u --reset "$TREE"
git -C "$REPO" commit -q -m "Back, but the base image changed meanwhile"
ecli tag "$(image_ref $APP v2)" "$BASE:latest" >/dev/null
assert_exit 0 dctl deploy
assert_not_contains "$OUT" "build reused" "a base image that changed: built again, not reused"
assert_contains "$OUT" "Step 1/" "a base image that changed: the image is built"

# --- --no-cache: no layer of the cache; build-cache clear: no image reused --------------------
assert_exit 0 dctl deploy --no-cache
assert_not_contains "$OUT" "Using cache" "--no-cache: every step is built (docker build --no-cache)"
assert_exit 0 dctl build-cache clear
assert_exit 0 dctl deploy --force # the tree PRODUCTION serves, built before
assert_not_contains "$OUT" "build reused" "after build-cache clear: no earlier image is reused"
assert_contains "$OUT" "Step 1/" "after build-cache clear: the image is built"
ecli rmi "$BASE:latest" >/dev/null 2>&1 || true
