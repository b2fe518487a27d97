#!/usr/bin/env bash
# The build cache of the process engine (docs/build-cache.md), with real npm: a Node app
# of 50 packages the test packs itself (file: tarballs, so no registry is asked). The first
# build installs them all; the next restores node_modules and npm finds it up to date; a
# change to package.json adds only the new package; a failing or timed-out build leaves
# the cache as it was; a tree built before is not built again ("build reused from vN"),
# unless --rebuild; --no-cache starts from nothing; [build] cache_max bounds the cache,
# least recently used first; build-cache ls | clear; agent df counts it; destroy removes it;
# a build quicker than writing its tree is not kept for reuse.
source "$(dirname "$0")/lib.sh"
require_binaries
require_tools "nodejs npm jq busybox sqlite3" node npm jq busybox sqlite3

start_agent
APP=hello

# --- 50 packages, packed as npm packs them (a "package/" folder in a gzipped tar) -------
PKGS=$TEST_TMP/pkgs
make_package() { # NAME
    local dir=$TEST_TMP/pkgsrc/$1/package
    mkdir -p "$dir" "$PKGS"
    printf '{"name":"%s","version":"1.0.0","main":"index.js"}\n' "$1" >"$dir/package.json"
    printf 'module.exports = "%s";\n' "$1" >"$dir/index.js"
    tar -czf "$PKGS/$1-1.0.0.tgz" -C "$TEST_TMP/pkgsrc/$1" package
}
package_json() { # COUNT: package.json depending on p01..pCOUNT
    local deps="" i name
    for ((i = 1; i <= $1; i++)); do
        printf -v name 'p%02d' "$i"
        deps+="${deps:+,}\"$name\":\"file:$PKGS/$name-1.0.0.tgz\""
    done
    printf '{"name":"hello","version":"1.0.0","private":true,"dependencies":{%s}}\n' "$deps"
}
for ((i = 1; i <= 51; i++)); do
    printf -v name 'p%02d' "$i"
    make_package "$name"
done

NPM_BUILD='echo "BUILD RAN"; npm_config_cache="$CACHE_DIR/npm" npm install --no-audit --no-fund --no-update-notifier --offline 2>&1 && mkdir -p public && echo "hello from $(cat VERSION)" > public/index.html && echo ok > public/healthz && ls node_modules | grep -c "^p" > public/modules'
# The app adds a line to a file of its release directory when it starts: what a build keeps
# for reuse is the directory as the build left it, without what the app wrote there since.
RUN_MARKING='echo started >> starts; exec busybox httpd -f -p 127.0.0.1:$PORT -h public'
# write_app [write_toml keys...]: deploy.toml with [build] cache = ["node_modules"]
write_app() {
    write_toml "$REPO" $APP build="$NPM_BUILD" run="$RUN_MARKING" "$@"
    sed -i 's/^\[build\]$/[build]\ncache = ["node_modules"]/' "$REPO/deploy.toml"
}
make_app_repo $APP
write_app
package_json 50 >"$REPO/package.json"
git -C "$REPO" add -A
git -C "$REPO" commit -q -m "An app of 50 packages"
CACHE=$DATA/apps/$APP/build-cache

# --- the first build installs everything and saves the cache ------------------------------
assert_exit 0 dctl deploy
FIRST=$OUT
assert_contains "$FIRST" "added 50 packages" "first build: npm installs the 50 packages"
assert_contains "$FIRST" 'build cache saved: node_modules, $CACHE_DIR' "first build: the cache is saved"
expect_serving $APP "hello from 1" "v1 serves"
assert_eq 50 "$(fetch $APP /modules)" "v1 has its 50 modules"
assert_true "node_modules is kept in the cache" test -f "$CACHE/paths/node_modules/p01/index.js"
assert_true "npm's own cache is kept under \$CACHE_DIR" test -d "$CACHE/dir/npm"
assert_false "no \$CACHE_DIR of a build in progress is left" test -e "$CACHE/build"
# Once the deploy has ended, a copy of the cache is made ahead for the next build.
assert_true "a copy of the cache is made ahead for the next build" \
    wait_until 10 test -f "$CACHE/next/paths/node_modules/p01/index.js"
assert_ne "$(stat -c %i "$CACHE/paths/node_modules/p01/index.js")" \
    "$(stat -c %i "$CACHE/next/paths/node_modules/p01/index.js")" "the copy made ahead has files of its own"

# --- a one-line change: node_modules restored, npm has nothing to add ------------------
commit_change "$REPO" "A one-line change" VERSION 2
assert_exit 0 dctl deploy
assert_contains "$OUT" "build cache: restored node_modules" "second build: node_modules restored"
assert_contains "$OUT" '($CACHE_DIR, node_modules: the copy made ahead of this build)' \
    "second build: the copy made ahead is taken, not copied again"
assert_match "$OUT" "up to date" "second build: npm finds node_modules up to date"
assert_not_contains "$OUT" "added 50 packages" "second build: nothing installed again"
expect_serving $APP "hello from 2" "v2 serves"
# The restored tree is a copy: the serving release and the cache share no file with it.
V1_INODE=$(stat -c %i "$(release_dir $APP v1)/node_modules/p01/index.js")
V2_INODE=$(stat -c %i "$(release_dir $APP v2)/node_modules/p01/index.js")
assert_ne "$V1_INODE" "$V2_INODE" "v2's node_modules is its own copy, not v1's files"

# --- package.json changes: only the new package is added --------------------------------
package_json 51 >"$REPO/package.json"
commit_change "$REPO" "One more package"
assert_exit 0 dctl deploy
assert_contains "$OUT" "added 1 package" "a new dependency: npm adds that one only"
assert_eq 51 "$(fetch $APP /modules)" "v3 has 51 modules"
assert_true "the cache has the new package" test -f "$CACHE/paths/node_modules/p51/index.js"
V3_TREE=$(git -C "$REPO" rev-parse HEAD^{tree})
commit_change "$REPO" "Another one-line change" VERSION 4
assert_exit 0 dctl deploy
expect_serving $APP "hello from 4" "v4 serves"

# --- a failing build, and one that times out, leave the cache as it was ---------------------
cache_listing() { (cd "$CACHE" && find paths dir -path dir/npm/_logs -prune -o -print | sort); }
BEFORE=$(cache_listing)
POISON='echo "BUILD RAN"; touch node_modules/poison "$CACHE_DIR/poison"; rm -rf node_modules/p01'
write_app build="$POISON; exit 3"
commit_change "$REPO" "A build that fails after changing its cache"
assert_exit 1 dctl deploy
assert_contains "$OUT" "build cache left as it was: the build failed" "a failed build: says the cache is kept"
assert_eq "$BEFORE" "$(cache_listing)" "a failed build: the cache is as it was"
write_app build="$POISON; sleep 30" build_timeout=2s
commit_change "$REPO" "A build that times out after changing its cache"
assert_exit 1 dctl deploy
assert_contains "$OUT" "build timed out" "a build past its timeout fails"
assert_eq "$BEFORE" "$(cache_listing)" "a timed-out build: the cache is as it was"
expect_serving $APP "hello from 4" "v4 still serves after the failed builds"

# --- the tree of v3 again: its build is reused, no build command runs -----------------------
git -C "$REPO" read-tree -u --reset "$V3_TREE"
git -C "$REPO" commit -q -m "Back to v3's tree"
assert_eq "$V3_TREE" "$(git -C "$REPO" rev-parse HEAD^{tree})" "the commit has v3's tree"
V3_KEY=$(sqlite3 "$DATA/state.db" "select substr(build_key, 1, 12) from releases where app='hello' and id='v3'")
copies_ahead() { grep -c "build $V3_KEY copied ahead of its reuse" "$AGENT_LOG" || true; }
COPIES_BEFORE=$(copies_ahead)
START=$(date +%s%N)
assert_exit 0 dctl deploy
REUSED_MS=$(( ($(date +%s%N) - START) / 1000000 ))
assert_contains "$OUT" "build reused from v3 (same inputs" "an identical tree: v3's build reused"
assert_not_contains "$OUT" "BUILD RAN" "an identical tree: no build command runs"
REUSED=$(release_ids | awk '{print $1}')
assert_eq 51 "$(fetch $APP /modules)" "the reused build serves ($REUSED, ${REUSED_MS} ms)"
assert_true "v3 wrote to its release directory when it started" test -s "$(release_dir $APP v3)/starts"
assert_eq 1 "$(wc -l <"$(release_dir $APP "$REUSED")/starts")" \
    "the reused build is v3's directory as its build left it: its starts file has only $REUSED's own start"
assert_true "the reused release has its own copy of the build" \
    test "$(stat -c %i "$(release_dir $APP v3)/public/modules")" != "$(stat -c %i "$(release_dir $APP "$REUSED")/public/modules")"
# Once the agent is idle, it copies the serving release's kept build ahead of its reuse: a
# redeploy of it then renames that copy into place instead of copying while it waits.
copied_ahead() { [[ $(copies_ahead) -gt $COPIES_BEFORE ]]; }
wait_until 30 copied_ahead || fail "the serving build is copied ahead of its reuse" "$(excerpt "$AGENT_LOG")"
pass "the serving build is copied ahead of its reuse (the agent's log says so)"
assert_exit 0 dctl build-cache ls --json
assert_jq "$(cat "$OUT_FILE")" '[.entries[] | select(.kind == "ready" and .release != null)] | length == 1' \
    "build-cache ls lists the copy made ahead, with the release whose build it is"
assert_exit 0 dctl deploy --force
assert_contains "$OUT" "build reused from" "deploy --force of the same tree: reused too"
assert_contains "$OUT" "(same inputs, its copy made ahead" "deploy --force: the copy made ahead is used"
FORCED=$(release_ids | awk '{print $1}')
assert_eq 51 "$(fetch $APP /modules)" "the build reused from its copy made ahead serves ($FORCED)"
assert_true "the copy made ahead is a release directory of its own" \
    test "$(stat -c %i "$(release_dir $APP "$REUSED")/public/modules")" != "$(stat -c %i "$(release_dir $APP "$FORCED")/public/modules")"

# --- --rebuild builds (with the cache); --no-cache builds from nothing ----------------------
assert_exit 0 dctl deploy --rebuild
assert_contains "$OUT" "BUILD RAN" "--rebuild: the build command runs"
assert_match "$OUT" "up to date" "--rebuild: with the cache restored"
assert_exit 0 dctl deploy --no-cache
assert_contains "$OUT" "BUILD RAN" "--no-cache: the build command runs"
assert_contains "$OUT" "build cache not used (--no-cache)" "--no-cache: says so"
assert_contains "$OUT" "added 51 packages" "--no-cache: npm installs everything"

# --- build-cache ls, agent df ---------------------------------------------------------------
assert_exit 0 dctl build-cache ls --json
LS=$OUT
assert_eq "build_cache" "$(jq -r .event <<<"$LS")" "build-cache ls --json: one build_cache event"
assert_jq "$LS" '[.entries[] | select(.kind == "path" and .name == "node_modules" and .bytes > 0)] | length == 1' "ls: node_modules, with its size"
assert_jq "$LS" '[.entries[] | select(.kind == "dir" and .name == "npm")] | length == 1' "ls: \$CACHE_DIR/npm"
assert_jq "$LS" '[.entries[] | select(.kind == "build" and (.release | test("^v[0-9]+$")))] | length >= 1' "ls: the builds kept for reuse"
assert_jq "$LS" '.max == 2147483648 and .bytes > 0' "ls: its size and cache_max (2G by default)"
assert_true "the copy for the next build is made ahead within 10 s" wait_until 10 test -d "$CACHE/next"
assert_exit 0 dctl build-cache ls --json
LS=$OUT
assert_jq "$LS" '[.entries[] | select(.kind == "ready" and .name == "next build" and .bytes > 0)] | length == 1' \
    "ls: the copy made ahead for the next build"
assert_exit 0 dctl build-cache ls
assert_match "$OUT" "node_modules +path" "build-cache ls: a row for node_modules"
assert_exit 0 dctl agent df --json
assert_jq "$OUT" "[.apps[] | select(.app == \"$APP\" and .build_cache > 0)] | length == 1" "agent df counts the build cache"
# The saved node_modules and the kept builds are hard links to release files: agent df counts
# them once, in RELEASES, so its BUILD CACHE is less than the entries' sizes that ls adds up.
CACHE_LISTED=$(jq '.bytes + .builds_bytes' <<<"$LS")
assert_jq "$OUT" "[.apps[] | select(.app == \"$APP\" and .build_cache < $CACHE_LISTED)] | length == 1" \
    "agent df: files the cache shares with releases count once, in releases (< $CACHE_LISTED bytes)"

# --- clear: the next build starts from nothing and reuses nothing ---------------------------
assert_exit 0 dctl build-cache clear --json
assert_jq "$OUT" '.event == "build_cache_cleared" and .removed_bytes > 0' "build-cache clear: what it removed"
assert_exit 0 dctl build-cache ls --json
assert_jq "$OUT" '.entries == []' "after clear: the cache is empty"
assert_exit 0 dctl deploy --force
assert_contains "$OUT" "BUILD RAN" "after clear: the same tree is built again"
assert_contains "$OUT" "added 51 packages" "after clear: npm installs everything"

# --- [build] cache_max: least recently used dropped first -----------------------------------
BIG_BUILD='echo "BUILD RAN"; d="$CACHE_DIR/run-$(date +%s%N)" && mkdir -p "$d" && head -c 102400 /dev/urandom > "$d/blob" && basename "$d" > last-run && mkdir -p public && echo "hello from $(cat VERSION)" > public/index.html && echo ok > public/healthz'
write_toml "$REPO" $APP build="$BIG_BUILD"
sed -i 's/^\[build\]$/[build]\ncache_max = "250k"/' "$REPO/deploy.toml"
for n in 1 2 3 4; do
    commit_change "$REPO" "A build that adds 100 KiB to its cache ($n)" VERSION "big-$n"
    assert_exit 0 dctl deploy
done
assert_contains "$OUT" "the least recently used, to stay within [build] cache_max" "cache_max: the build says what it dropped"
LAST_RUN=$(cat "$(release_dir $APP "$(release_ids | awk '{print $1}')")/last-run")
assert_exit 0 dctl build-cache ls --json
assert_jq "$OUT" '.bytes <= 256000 and .max == 256000' "cache_max: the cache stays within 250k ($(jq -c '[.bytes, [.entries[] | .name]]' <<<"$OUT"))"
assert_jq "$OUT" "[.entries[] | select(.name == \"$LAST_RUN\")] | length == 1" "cache_max: the newest entry is kept"
assert_jq "$OUT" '[.entries[] | select(.name | startswith("run-"))] | length == 2' "cache_max: the two newest runs are kept"

# --- a quick build of a big tree is not kept: a reuse would copy as much as building writes --
QUICK_REPO=$REPO
make_app_repo bigtree build='echo "QUICK BUILD"; mkdir -p public && echo "hello from $(cat VERSION)" > public/index.html && echo ok > public/healthz'
for d in $(seq 1 40); do
    mkdir -p "$REPO/lib/d$d"
    for f in $(seq 1 50); do echo "module $d $f" >"$REPO/lib/d$d/f$f.js"; done
done
git -C "$REPO" add -A
git -C "$REPO" commit -q -m "2,000 files"
assert_exit 0 dctl deploy
assert_contains "$OUT" "QUICK BUILD" "bigtree: built"
assert_match "$OUT" "this build is not kept for reuse: it took [0-9]+ ms, less than writing the release's files" \
    "a build quicker than writing its 2,000 files is not kept, and the deploy says so"
assert_eq "" "$(ls "$DATA/apps/bigtree/build-cache/builds" 2>/dev/null)" "nothing kept under builds/"
assert_exit 0 dctl deploy --force
assert_contains "$OUT" "QUICK BUILD" "the same tree again: built again"
assert_not_contains "$OUT" "build reused" "the same tree again: nothing reused"
expect_serving bigtree "hello from 1" "bigtree serves"
REPO=$QUICK_REPO

# --- a malformed [build] cache is refused before anything changes ---------------------------
sed -i 's/^\[build\]$/[build]\ncache = ["..\/outside"]/' "$REPO/deploy.toml"
git -C "$REPO" commit -qam "A cache path outside the app"
assert_exit 2 dctl deploy
assert_contains "$OUT$ERR" "is not a relative path inside the app" "a cache path outside the app: refused"

# --- destroy removes the cache with the app ---------------------------------------------------
git -C "$REPO" reset -q --hard HEAD~1
assert_exit 0 dctl destroy $APP --yes
assert_false "destroy removes the build cache" test -e "$CACHE"
