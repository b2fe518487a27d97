#!/usr/bin/env bash
# Uploads as a Merkle tree and streamed blobs (docs/api.md, "Uploading a tree"): a first
# deploy of a nested tree; an unchanged redeploy that sends almost nothing; a one-file change
# deep in the tree that sends that file and the nodes on its path; the digest cache in .git/;
# a build that writes to a file of its release cannot corrupt a blob; hostile frames and
# nodes are refused and store nothing; an agent killed in the middle of a streamed upload
# leaves no partial blob and the next deploy completes.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent
APP=hello
# The build appends to a file the tree has: the release's copy changes, never the blob.
make_app_repo hello build="echo built >> lib/a/b/c/deep.txt && $DEFAULT_BUILD"
for d in 1 2 3 4 5; do
    for f in 1 2 3 4 5 6 7 8; do
        mkdir -p "$REPO/lib/m$d/s$f"
        head -c 3000 /dev/urandom | base64 >"$REPO/lib/m$d/s$f/file$f.txt"
    done
done
mkdir -p "$REPO/lib/a/b/c" "$REPO/log" "$REPO/tmp/cache"
echo "deep v1" >"$REPO/lib/a/b/c/deep.txt"
# The same folder at two depths is one tree node (sent once).
touch "$REPO/log/.gitkeep" "$REPO/tmp/cache/.gitkeep"
ln -s a/b/c/deep.txt "$REPO/lib/link.txt"
git -C "$REPO" add -A && git -C "$REPO" commit -qm "a nested tree"

# all_blobs_whole: every stored blob hashes to its name.
all_blobs_whole() {
    local f bad=0
    while IFS= read -r f; do
        [[ $(sha256sum "$f" | cut -d' ' -f1) == "$(basename "$f")" ]] || { echo "corrupt: $f" >&2; bad=1; }
    done < <(find "$DATA/blobs" -mindepth 2 -maxdepth 2 -type f -path '*/[0-9a-f][0-9a-f]/*')
    return $bad
}
upload_of() { jq -c 'select(.event == "upload")' <<<"$1"; }

run dctl --json deploy
assert_eq 0 "$RC" "first deploy of a nested tree succeeds"
first=$(upload_of "$OUT")
assert_jq "$first" '.blobs_missing == .blobs_total and .bytes_sent == .bytes_total and .wire_bytes > 0' "first deploy: every blob sent, and what went on the wire"
assert_jq "$first" '.wire_bytes < .bytes_total' "first deploy: base64 text goes compressed (wire bytes below the contents')"
expect_serving $APP "hello from 1" "the first release serves"
release_dir=$DATA/apps/hello/releases/v1
assert_eq "deep v1
built" "$(cat "$release_dir/lib/a/b/c/deep.txt")" "the build wrote to its release's copy"
assert_eq "deep v1" "$(cat "$release_dir/lib/link.txt" 2>/dev/null | head -1)" "a symlink of the tree is materialized"
deep_digest=$(printf 'deep v1\n' | sha256sum | cut -d' ' -f1)
assert_eq "deep v1" "$(cat "$DATA/blobs/${deep_digest:0:2}/$deep_digest")" "the blob the build's file came from is unchanged"
all_blobs_whole && pass "every stored blob hashes to its name" || fail "every stored blob hashes to its name" "see above"
[[ -s $REPO/.git/deployctl/digests ]] && pass "the digests are cached in .git/deployctl/digests" ||
    fail "the digests are cached in .git/deployctl/digests" "no such file"
assert_eq "$(git -C "$REPO" ls-files -s | grep -v link.txt | awk '{ print $2 }' | sort -u | wc -l)" "$(sort -u "$REPO/.git/deployctl/digests" | wc -l)" "one cached digest per distinct file of the tree"

# --- unchanged: one small request --------------------------------------------------------
run dctl --json deploy
assert_eq 0 "$RC" "an unchanged redeploy succeeds"
same=$(upload_of "$OUT")
assert_jq "$same" '.blobs_missing == 0 and .bytes_sent == 0 and .wire_bytes < 1024' "unchanged: nothing to send, under 1 KiB on the wire"
assert_contains "$OUT" '"event":"unchanged"' "unchanged: no new release"

# --- one file deep in the tree -----------------------------------------------------------
# The spare copy of v1's tree is written while the agent has nothing else to do: a deploy
# that comes before it is whole writes its files from the store (see below).
wait_until 20 test -d "$DATA/apps/hello/releases/.tmp-spare" || fail "the spare copy of v1's tree is written" "no releases/.tmp-spare"
commit_change "$REPO" "one file" lib/m3/s5/file5.txt "changed in v2" VERSION 2
run dctl --json deploy
assert_eq 0 "$RC" "a one-file change deploys"
change=$(upload_of "$OUT")
assert_jq "$change" '.blobs_missing == 2 and .wire_bytes < 8192' "one-file change: the two changed files and the nodes on their path, under 8 KiB"
expect_serving $APP "hello from 2" "the change serves"
assert_eq "changed in v2" "$(cat "$DATA/apps/hello/releases/v2/lib/m3/s5/file5.txt")" "the changed file is in the release"
assert_eq "$(cat "$REPO/lib/m1/s1/file1.txt")" "$(cat "$DATA/apps/hello/releases/v2/lib/m1/s1/file1.txt")" "an unchanged file is in the release"
# v2's files were made from the spare copy of v1's tree: the two changed files written, and
# every file of the commit in the release as it is in git, but the one the build appends to
# (through the symlink too), which has v1's build's line once: v2's, not v1's as well.
assert_contains "$OUT" "release files made from the spare copy of the last tree" "v2's files: from the spare copy of v1's tree"
assert_contains "$OUT" "2 written, 0 removed" "v2's files: the two changed files written, none removed"
differs=$(git -C "$REPO" ls-files | while IFS= read -r f; do cmp -s "$REPO/$f" "$DATA/apps/hello/releases/v2/$f" || echo "$f"; done)
assert_eq "lib/a/b/c/deep.txt lib/link.txt" "$(echo $differs)" "v2's files: each file of the commit as it is in git, but the one its build wrote to"
assert_eq "deep v1
built" "$(cat "$DATA/apps/hello/releases/v2/lib/a/b/c/deep.txt")" "v2's files: v1's build's write is not in the spare it came from"

# --- the digest cache: a damaged line is skipped; a wrong digest fails loudly -----------
printf 'garbage line\ng:abc not-a-digest 12\n' >>"$REPO/.git/deployctl/digests"
commit_change "$REPO" "v3" VERSION 3
run dctl deploy
assert_eq 0 "$RC" "a damaged line in the digest cache is skipped"
expect_serving $APP "hello from 3" "v3 serves"

# --- hostile frames and nodes store nothing ----------------------------------------------
before=$(find "$DATA/blobs" -mindepth 2 -type f | wc -l)
post_frames() { acurl -s -o "$TEST_TMP/frames.out" -w '%{http_code}' -H 'Content-Type: application/x-deployctl-blobs' --data-binary @"$1" "$AGENT_URL/v1/blobs"; }
good=$(printf 'good content\n' | sha256sum | cut -d' ' -f1)
{ printf '%s 13 raw 13\ngood content\n' "$good"; printf '%s 4 raw 4\nevil' "$good"; } >"$TEST_TMP/wrong.bin"
assert_eq 400 "$(post_frames "$TEST_TMP/wrong.bin")" "a frame whose content does not hash to its digest: 400"
assert_contains "$(cat "$TEST_TMP/frames.out")" "hashes to" "the answer names the mismatch"
printf '%s 13 raw 13\ngood' "$good" >"$TEST_TMP/short.bin"
assert_eq 400 "$(post_frames "$TEST_TMP/short.bin")" "a frame cut short: 400"
printf '%s 13 zstd 5\nabcde' "$good" >"$TEST_TMP/badz.bin"
assert_eq 400 "$(post_frames "$TEST_TMP/badz.bin")" "a zstd frame that does not decompress: 400"
printf '%s 999999999999 raw 999999999999\n' "$good" >"$TEST_TMP/huge.bin"
assert_eq 400 "$(post_frames "$TEST_TMP/huge.bin")" "a frame claiming a huge blob: 400"
assert_eq "$before" "$(find "$DATA/blobs" -mindepth 2 -type f | wc -l)" "refused frames store nothing (the good frame before a bad one neither)"
[[ ! -e $DATA/blobs/${good:0:2}/$good ]] && pass "the good frame of a refused body is not kept" || fail "the good frame of a refused body is not kept" "stored"
printf 'not zstd at all' >"$TEST_TMP/notz.bin"
code=$(acurl -s -o "$TEST_TMP/frames.out" -w '%{http_code}' -H 'Content-Type: application/x-deployctl-blobs' -H 'Content-Encoding: zstd' --data-binary @"$TEST_TMP/notz.bin" "$AGENT_URL/v1/blobs")
assert_eq 400 "$code" "a body sent as zstd that is not: 400"
assert_contains "$(cat "$TEST_TMP/frames.out")" "does not decompress" "the answer says it does not decompress"
code=$(acurl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/x-deployctl-blobs' -H 'Content-Encoding: gzip' --data-binary @"$TEST_TMP/short.bin" "$AGENT_URL/v1/blobs")
assert_eq 415 "$code" "a body in another encoding (gzip): 415"
printf '%s 13 raw 13\ngood content\n' "$good" | zstd -q -c >"$TEST_TMP/good.zst"
code=$(acurl -s -o "$TEST_TMP/frames.out" -w '%{http_code}' -H 'Content-Type: application/x-deployctl-blobs' -H 'Content-Encoding: zstd' --data-binary @"$TEST_TMP/good.zst" "$AGENT_URL/v1/blobs")
assert_eq 201 "$code" "a good body compressed as a whole is stored"
[[ -f $DATA/blobs/${good:0:2}/$good ]] && pass "its blob is stored" || fail "its blob is stored" "missing"
rm -f "$DATA/blobs/${good:0:2}/$good"
code=$(acurl -s -o "$TEST_TMP/t.out" -w '%{http_code}' -X POST -d '{"nodes":["[[\"../x\",\"f\",\"'"$good"'\",13]]"]}' "$AGENT_URL/v1/trees/missing")
assert_eq 400 "$code" "a tree node with an unsafe name: 400"
code=$(acurl -s -o "$TEST_TMP/t.out" -w '%{http_code}' -X POST -d '{"nodes":["[[\"b\",\"f\",\"'"$good"'\",13],[\"a\",\"f\",\"'"$good"'\",13]]"]}' "$AGENT_URL/v1/trees/missing")
assert_eq 400 "$code" "a tree node whose entries are not sorted: 400"
toml=$(jq -Rs . <"$REPO/deploy.toml")
code=$(acurl -s -o "$TEST_TMP/t.out" -w '%{http_code}' -X POST -d "{\"config\":$toml,\"tree\":\"$(printf x | sha256sum | cut -d' ' -f1)\"}" "$AGENT_URL/v1/apps/hello/deployments")
assert_eq 404 "$code" "a deployment naming a tree the agent never saw: 404"
assert_contains "$(cat "$TEST_TMP/t.out")" "trees/missing" "the answer says how to send the tree"

# --- the Merkle root of a git tree is kept; a wrong one costs only time ------------------
roots=$REPO/.git/deployctl/roots
head_tree=$(git -C "$REPO" rev-parse 'HEAD^{tree}')
assert_match "$(tail -1 "$roots" 2>/dev/null)" "^2/[^ ]+ $head_tree [0-9a-f]{64}( [0-9]+){4}$" "the root of HEAD's tree is kept in .git/deployctl/roots with its figures, tagged with this deployctl's version"
tag=$(tail -1 "$roots" | cut -d' ' -f1)
good_root=$(tail -1 "$roots" | cut -d' ' -f3)
figures=$(tail -1 "$roots" | cut -d' ' -f4-)
# figures_of JSON: "files bytes contents their-bytes" as a deploy's package and upload events say.
figures_of() {
    local package upload
    package=$(jq -c 'select(.event == "package")' <<<"$1")
    upload=$(upload_of "$1")
    echo "$(jq -r .files <<<"$package") $(jq -r .bytes <<<"$package") $(jq -r .blobs_total <<<"$upload") $(jq -r .bytes_total <<<"$upload")"
}
# What a deploy that walks the tree reports (the record moved away meanwhile).
mv "$roots" "$roots.kept"
run dctl --json deploy
walked=$(figures_of "$OUT")
mv "$roots.kept" "$roots"
assert_eq "$walked" "$figures" "the kept record's figures (files, bytes, contents, their bytes) are what a walk of the tree reports"
run dctl --json deploy
assert_contains "$OUT" '"event":"unchanged"' "the kept root: an unchanged redeploy"
assert_jq "$(upload_of "$OUT")" ".tree == \"$good_root\" and .wire_bytes < 1024" "the kept root: asked about as it is, under 1 KiB on the wire"
# Packaged from the record, without walking the tree: the same figures as the walk gave.
assert_eq "$walked" "$(figures_of "$OUT")" "a deploy packaged from the record reports the walk's figures"
# A root the agent does not have (a line damaged into another digest): the tree's nodes are
# built and its own root asked about.
printf '%s %s %s %s\n' "$tag" "$head_tree" "$(printf x | sha256sum | cut -d' ' -f1)" "$figures" >>"$roots"
run dctl --json deploy
assert_eq 0 "$RC" "a wrong root in the cache: the deploy works"
assert_contains "$OUT" '"event":"unchanged"' "a wrong root in the cache: still unchanged"
assert_jq "$(upload_of "$OUT")" ".tree == \"$good_root\"" "a wrong root in the cache: the tree's own root is deployed"
assert_eq "$tag $head_tree $good_root $figures" "$(tail -1 "$roots")" "a wrong root in the cache: the right one is kept again"
# Another version's line is not trusted, even naming a tree the agent has whole (v1's).
first_root=$(jq -r '.tree' <<<"$first")
printf '2/0.0.0-other %s %s %s\n' "$head_tree" "$first_root" "$figures" >>"$roots"
run dctl --json deploy
assert_jq "$(upload_of "$OUT")" ".tree == \"$good_root\"" "another version's root for the same git tree is not used"
assert_contains "$OUT" '"event":"unchanged"' "another version's line: still unchanged"

# The spare of the last tree written, kept beside the releases while the agent runs.
wait_until 10 test -d "$DATA/apps/hello/releases/.tmp-spare" && pass "a spare tree is kept" || fail "a spare tree is kept" "no releases/.tmp-spare"

# --- kill -9 in the middle of a streamed upload -----------------------------------------
head -c $((24 * 1024 * 1024)) /dev/urandom >"$TEST_TMP/big.raw"
big=$(sha256sum "$TEST_TMP/big.raw" | cut -d' ' -f1)
# A small frame first: written to a file without a name in blobs/tmp (O_TMPFILE), it is
# stored only with the whole body; killed, the agent leaves nothing of it.
printf 'small frame before a killed upload %s\n' "$RANDOM" >"$TEST_TMP/small.raw"
small=$(sha256sum "$TEST_TMP/small.raw" | cut -d' ' -f1)
small_size=$(stat -c %s "$TEST_TMP/small.raw")
{
    printf '%s %s raw %s\n' "$small" "$small_size" "$small_size"
    cat "$TEST_TMP/small.raw"
    printf '%s %s raw %s\n' "$big" 25165824 25165824
    cat "$TEST_TMP/big.raw"
} >"$TEST_TMP/big.frames"
acurl -s -o /dev/null --limit-rate 4M -H 'Content-Type: application/x-deployctl-blobs' --data-binary @"$TEST_TMP/big.frames" "$AGENT_URL/v1/blobs" &
uploader=$!
# Mid-way: the agent has read 4 MB of the 24 MiB (the body is read as it arrives and the
# frame is stored once whole).
upload_seen() {
    local got
    got=$(ss -tinH state established "( sport = :$AGENT_PORT )" | grep -o 'bytes_received:[0-9]*' | cut -d: -f2 | sort -n | tail -1)
    [[ -n $got ]] && ((got > 4000000))
}
wait_until 10 upload_seen ||
    fail "the streamed upload is on its way" "the agent has not received 4 MB of it"
# (/proc/PID/fd names such a file "DATA/blobs/tmp/#INODE (deleted)".)
unnamed=$(find "/proc/$AGENT_PID/fd" -lname "$DATA/blobs/tmp/#* (deleted)" 2>/dev/null | wc -l)
assert_eq 1 "$unnamed" "mid-upload: the whole small frame waits in a file without a name in blobs/tmp"
kill_agent -9
wait "$uploader" 2>/dev/null || true
[[ ! -e $DATA/blobs/${big:0:2}/$big ]] && pass "killed mid-upload: the blob is not stored" || fail "killed mid-upload: the blob is not stored" "it is"
[[ ! -e $DATA/blobs/${small:0:2}/$small ]] && pass "killed mid-upload: the whole frame before it is not stored either" || fail "killed mid-upload: the whole frame before it is not stored either" "it is"
assert_eq 0 "$(find "$DATA/blobs/tmp" -type f 2>/dev/null | wc -l)" "killed mid-upload: nothing of the upload is left in blobs/tmp"
# A named one (left by an agent that ran out of descriptors for unnamed ones) goes at the start.
printf 'half an upload' >"$DATA/blobs/tmp/upload-1-2-3"
restart_agent
assert_eq 0 "$(find "$DATA/blobs/tmp" -type f 2>/dev/null | wc -l)" "the restarted agent removed a named half-sent upload"
[[ ! -e $DATA/apps/hello/releases/.tmp-spare ]] && pass "the restarted agent removed the spare tree it no longer knows" || fail "the restarted agent removed the spare tree it no longer knows" "releases/.tmp-spare is there"
all_blobs_whole && pass "after the kill every stored blob is whole" || fail "after the kill every stored blob is whole" "see above"
cp "$TEST_TMP/big.raw" "$REPO/big.bin"
commit_change "$REPO" "v4 with a big file" VERSION 4
run dctl --json deploy
assert_eq 0 "$RC" "the next deploy completes"
assert_not_contains "$OUT" "spare copy" "after a restart the tree is written from the store"
expect_serving $APP "hello from 4" "and serves"
assert_eq "$big" "$(sha256sum "$DATA/apps/hello/releases/v4/big.bin" | cut -d' ' -f1)" "the big file (one PUT) arrived whole"
all_blobs_whole && pass "every stored blob is whole at the end" || fail "every stored blob is whole at the end" "see above"

# --- a tree deployed before, to an agent that has none of it -----------------------------
# Packaged from its record in .git/deployctl/roots (no walk); the new agent lacks the root, so
# the tree is walked then and every file uploaded.
head_tree=$(git -C "$REPO" rev-parse 'HEAD^{tree}')
assert_match "$(grep " $head_tree " "$REPO/.git/deployctl/roots" | tail -1)" "^2/" "v4's tree is recorded"
start_agent fresh
run dctl --json deploy
assert_eq 0 "$RC" "a recorded tree to a new agent: the deploy completes"
upload=$(upload_of "$OUT")
assert_jq "$upload" ".blobs_missing == .blobs_total and .blobs_total > 0 and .bytes_sent == .bytes_total" \
    "a recorded tree to a new agent: every file is uploaded"
expect_serving $APP "hello from 4" "a recorded tree to a new agent: it serves"
assert_eq "$big" "$(sha256sum "$DATA/apps/hello/releases/$(jq -r 'select(.event == "done") | .release' "$OUT_FILE")/big.bin" | cut -d' ' -f1)" \
    "a recorded tree to a new agent: the big file arrived whole"
