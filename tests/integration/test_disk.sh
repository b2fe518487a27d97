#!/usr/bin/env bash
# The disk kept in bounds (docs/design.md §4, "Disk"): blobs no kept release
# uses are collected after each prune, also while deploys run; deployctl agent
# df and agent prune; and an agent whose data dir sits on a small tmpfs refuses
# what does not fit up front (exit 6), fails a build that fills the disk, keeps
# state.db whole when SQLite cannot write, keeps serving throughout, and
# deploys again once space is freed.
source "$(dirname "$0")/lib.sh"
require_binaries

blob_count() { find "${1:-$DATA}/blobs" -mindepth 2 -maxdepth 2 -type f -name '[0-9a-f]*' | count_lines; }
blob_bytes() { find "${1:-$DATA}/blobs" -mindepth 2 -maxdepth 2 -type f -name '[0-9a-f]*' -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
# new_big_file REPO MIB: big.bin with new random content, committed with VERSION bumped.
new_big_file() {
    head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1/big.bin"
    echo $(($(cat "$1/VERSION") + 1)) >"$1/VERSION"
    git -C "$1" add -A
    git -C "$1" commit -q -m "big.bin of $2 MiB"
}

# --- collection: 30 deploys of a changing 1 MiB file, keep = 2 -----------------
start_agent
make_app_repo hello keep=2
APP=hello
for i in $(seq 1 30); do
    new_big_file "$REPO" 1
    run dctl deploy -q
    [[ $RC == 0 ]] || fail "deploy $i of 30 succeeds" "exit $RC:" "$OUT$ERR"
done
pass "30 deploys of a tree whose 1 MiB file changes every time succeed"
expect_serving $APP "hello from 31" "the 30th deploy serves"
# PRODUCTION and keep = 2 INACTIVE releases: three trees, each with its own
# big.bin and VERSION, and deploy.toml and .gitignore shared by all.
# (The last deploy's drain and prune run after deployctl returns.)
release_count() { acurl -s "$AGENT_URL/v1/apps/hello/releases" | jq length; }
wait_until 10 test "$(release_count)" = 3 || true
assert_eq 3 "$(release_count)" "keep = 2: PRODUCTION and 2 INACTIVE releases remain"
wait_until 5 grep -q "deleted hello v27" "$AGENT_LOG" || true
sleep 0.2 # the collection right after that prune
count=$(blob_count)
# Each kept release also keeps its tree's node (its root: the tree has no folders).
((count <= 3 * 2 + 2 + 3)) && pass "the blobs are bounded by keep: $count stored (at most 11)" ||
    fail "the blobs are bounded by keep" "at most 11 (3 releases x big.bin, VERSION and the tree's node, + 2 shared)" "came: $count"
bytes=$(blob_bytes)
((bytes < 4 * 1024 * 1024)) && pass "the blobs take $bytes bytes (less than 4 MiB for 3 releases of 1 MiB)" ||
    fail "the blobs take less than 4 MiB" "came: $bytes bytes"
assert_contains "$(<"$AGENT_LOG")" "collected" "the agent logs the blobs it collected"
# What remains is what the kept releases need: a rollback still works.
assert_exit 0 dctl rollback
expect_serving $APP "hello from 30" "a rollback to the newest INACTIVE release serves it"
assert_exit 0 dctl rollback v30
expect_serving $APP "hello from 31" "and back"

# --- deployctl agent df ----------------------------------------------------------------
run dctl agent df --json
assert_eq 0 "$RC" "agent df --json succeeds"
df_json=$OUT
assert_jq "$df_json" '.event == "disk" and .host != ""' "agent df prints a disk event with its host"
assert_jq "$df_json" ".blobs.count == $(blob_count) and .blobs.bytes == $(blob_bytes)" "agent df counts the stored blobs and their bytes"
assert_jq "$df_json" '.blobs.unused == 0' "agent df: no blob is unused after the collections"
assert_jq "$df_json" '.free > 0 and .size >= .free and .reserve > 0 and .total > .blobs.bytes' "agent df: the disk's free space, size, reserve and the data dir's total"
assert_jq "$df_json" '.apps | length == 1 and .[0].app == "hello" and .[0].releases > 3000000 and .[0].blobs > 3000000 and .[0].logs > 0' "agent df: hello's release trees, blobs and logs"
run dctl agent df
assert_eq 0 "$RC" "agent df succeeds"
assert_match "$OUT$ERR" "disk +[0-9.]+ [KMGT]iB free of" "agent df shows the free space"
assert_match "$OUT$ERR" "hello +[0-9.]+ MiB" "agent df shows a row for hello"

# --- deployctl agent prune -------------------------------------------------------------
# A blob no release uses, uploaded by a deploy that never came: pinned while the
# agent runs (for an hour), unpinned after a restart.
orphan=$TEST_TMP/orphan.bin
head -c 200000 /dev/urandom >"$orphan"
digest=$(sha256sum "$orphan" | cut -d' ' -f1)
assert_eq 201 "$(acurl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$orphan" "$AGENT_URL/v1/blobs/$digest")" "an upload nothing uses yet is stored"
run dctl agent prune --dry-run --json
assert_jq "$OUT" '.event == "prune" and .dry_run == true and (.blobs | length) == 0' "a blob uploaded for a deploy in progress is not collected"
kill_agent -9
restart_agent
run dctl agent prune --dry-run
assert_eq 0 "$RC" "agent prune --dry-run succeeds"
assert_contains "$OUT$ERR" "would remove blob $digest" "agent prune --dry-run names the unused blob"
[[ -f $DATA/blobs/${digest:0:2}/$digest ]] && pass "--dry-run removes nothing" || fail "--dry-run removes nothing" "the blob is gone"
run dctl agent prune --json
assert_jq "$OUT" ".dry_run == false and .blobs == [{\"digest\":\"$digest\",\"bytes\":200000}] and .bytes == 200000" "agent prune removes it and says so"
[[ ! -e $DATA/blobs/${digest:0:2}/$digest ]] && pass "the unused blob is gone" || fail "the unused blob is gone" "still there"
run dctl agent prune
assert_contains "$OUT$ERR" "removed 0 unused blobs" "a second prune finds nothing"
expect_serving $APP "hello from 31" "prune leaves the serving release alone"
ro=$("$AGENT_BIN" token create --all-apps --scope read --name df-reader --data-dir "$DATA" 2>/dev/null)
dt=$("$AGENT_BIN" token create --all-apps --scope deploy --name ci --data-dir "$DATA" 2>/dev/null)
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ro" "$AGENT_URL/v1/disk")" "df needs a read token"
assert_eq 403 "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $dt" -X POST -d '{}' "$AGENT_URL/v1/prune")" "prune needs an admin token (a deploy token gets 403)"

# --- collection while deploying the same blobs ------------------------------------------
(
    end=$((SECONDS + 60))
    while ((SECONDS < end)) && [[ ! -e $TEST_TMP/stop-pruning ]]; do
        dctl agent prune -q >/dev/null 2>&1 || true
        acurl -s -X POST -d '{}' "$AGENT_URL/v1/prune" >/dev/null 2>&1 || true
    done
) &
pruner=$!
for i in 1 2 3 4 5 6; do
    new_big_file "$REPO" 1
    run dctl deploy -q
    [[ $RC == 0 ]] || { touch "$TEST_TMP/stop-pruning"; fail "deploy $i of 6 succeeds while prune runs in a loop" "exit $RC:" "$OUT$ERR"; }
    # Deploying the previous tree again reuses its blobs, which are not
    # uploaded again: they must survive the collections in between.
    if ((i == 3)); then
        run dctl deploy -q --force
        [[ $RC == 0 ]] || { touch "$TEST_TMP/stop-pruning"; fail "a forced deploy of the same tree succeeds while prune runs" "exit $RC:" "$OUT$ERR"; }
    fi
done
touch "$TEST_TMP/stop-pruning"
wait "$pruner" || true
pass "7 deploys succeed while agent prune runs in a loop"
expect_serving $APP "hello from 37" "the last of them serves"

# --- app logs rotate: 50 MB of output, [logs] max_size = 1m, keep = 2 ---------------------
# A marker 1.5 MB before the end: in a rotated generation once the output is done.
make_app_repo chatty run='head -c 50000000 /dev/zero | tr "\\0" a | fold -w 99; printf "\\nrotated-marker\\n"; head -c 1500000 /dev/zero | tr "\\0" b | fold -w 99; exec busybox httpd -f -p 127.0.0.1:$PORT -h public' health_timeout=60s
printf '\n[logs]\nmax_size = "1m"\nkeep = 2\n' >>"$REPO/deploy.toml"
git -C "$REPO" commit -qam "rotate at 1m, keep 2"
APP=chatty
assert_exit 0 dctl deploy -q
expect_serving $APP "hello from 1" "an app that wrote 50 MB of output serves"
log=$DATA/apps/chatty/logs/v1.app.log
wait_until 20 test -e "$log.2.zst" || true
sizes=$(find "$(dirname "$log")" -name 'v1.app.log*' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
((sizes <= 3 * 1024 * 1024 + 4096)) && pass "the app's logs take $sizes bytes on disk: at most max_size x (keep + 1)" ||
    fail "the app's logs take at most max_size x (keep + 1)" "came: $sizes bytes"
assert_eq "$log.1.zst $log.2.zst" "$(ls "$log".*.zst | paste -sd' ')" "two compressed generations are kept, no third"
generation=$(zstdcat "$log.1.zst" | wc -c)
((generation >= 1024 * 1024)) && pass "a rotated generation decompresses (zstdcat) to $generation bytes of the app's output" ||
    fail "a rotated generation decompresses to at least 1 MiB" "came: $generation"
# Each line as the writer stamps it: its time (UTC, microseconds), a space, the app's line.
assert_match "$(zstdcat "$log.1.zst" | head -n 1)" "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z [ab]{99}$" "it holds the app's lines, each with its time"
marker_rotated() { ! grep -q rotated-marker "$log" && (($(zstdcat "$log".*.zst 2>/dev/null | grep -c 'Z rotated-marker$') == 1)); }
assert_true "the marker line is in a rotated generation once the output is written" wait_until 30 marker_rotated
run dctl logs
assert_eq 0 "$RC" "deployctl logs reads the current log and the rotated ones"
assert_match "$(tail -n 1 <<<"$OUT")" "b{99}" "and shows the app's newest lines last"
assert_exit 0 dctl --json logs --grep '^rotated-marker$'
assert_eq "rotated-marker" "$(jq -r .line "$OUT_FILE")" "logs --grep finds a line in a rotated, compressed generation"
assert_exit 0 dctl --json logs -n 3
assert_eq "app app app" "$(jq -r .stream "$OUT_FILE" | xargs)" "logs -n 3 over rotated generations: the newest 3 lines"
APP=hello

# --- [logs] max_age: an app's log files last written longer ago go -----------------------
make_app_repo aged
printf '\n[logs]\nmax_age = "1h"\n' >>"$REPO/deploy.toml"
git -C "$REPO" commit -qam "logs older than an hour go"
APP=aged
assert_exit 0 dctl deploy -q
logs_dir=$DATA/apps/aged/logs
printf 'old\n' | zstd -q >"$logs_dir/v1.app.log.3.zst"
printf 'an old run\n' >"$logs_dir/cron.nightly.log"
touch -d '2 hours ago' "$logs_dir/v1.app.log.3.zst" "$logs_dir/cron.nightly.log"
touch -d '30 minutes ago' "$logs_dir/v1.ndjson"
assert_exit 0 dctl --json agent prune --dry-run
assert_eq "aged/cron.nightly.log aged/v1.app.log.3.zst" \
    "$(jq -r '.logs[] | "\(.app)/\(.file)"' "$OUT_FILE" | sort | paste -sd' ')" \
    "agent prune --dry-run: the app's log files written more than max_age (1h) ago, and only them"
assert_true "... and removes nothing" test -e "$logs_dir/cron.nightly.log"
assert_exit 0 dctl agent prune
assert_contains "$OUT" "removed 2 log files past [logs] max_age" "agent prune: removes them, and says so"
assert_false "the old rotated generation is gone" test -e "$logs_dir/v1.app.log.3.zst"
assert_false "the old cron log is gone" test -e "$logs_dir/cron.nightly.log"
assert_true "the release's event log (30 minutes old) stays" test -e "$logs_dir/v1.ndjson"
assert_true "the app's current log stays" test -e "$logs_dir/v1.app.log"

# --- a small disk: a 64 MiB tmpfs -------------------------------------------------------
SMALL=$TEST_TMP/small/data
mkdir -p "$SMALL"
if ! mount -t tmpfs -o size=64m tmpfs "$SMALL" 2>/dev/null; then
    # CI runs as root: there, not running the disk-full cases is a failure.
    [[ ${CI:-} == true ]] && fail "a 64 MiB tmpfs is mounted for the disk-full cases" "mount -t tmpfs failed (CI runs as root)"
    log "SKIP: the disk-full cases need to mount a tmpfs (root); the checks above passed"
    exit 77
fi
pass "a 64 MiB tmpfs is mounted for a second agent's data dir"
start_agent small
make_app_repo small
APP=small
assert_exit 0 dctl deploy -q
expect_serving $APP "hello from 1" "v1 of small serves from the tmpfs"
# The files of the apps, but their logs and the copy of the serving build the agent makes
# ahead of its reuse once it is idle (docs/build-cache.md), which may come at any time.
app_files() {
    (cd "$DATA" && find apps -path 'apps/*/logs' -prune -o -path 'apps/*/build-cache/builds/.ready-*' -prune -o -print | LC_ALL=C sort)
}
remember() { BASE_SMALL=$(app_files); }
unchanged() {
    local now
    now=$(app_files)
    [[ $now == "$BASE_SMALL" ]] && pass "$1: no release files added or removed" ||
        fail "$1: no release files added or removed" "$(diff <(echo "$BASE_SMALL") <(echo "$now") | head)"
}
remember

# 1. An upload larger than the disk: refused before anything is sent.
new_big_file "$REPO" 95
run dctl deploy
assert_eq 6 "$RC" "a 95 MiB tree to a 64 MiB disk: deployctl exits 6"
assert_match "$OUT$ERR" "the agent's disk is full: [0-9.]+ MiB free in $SMALL, this upload needs 95.0 MiB" "it says the disk is full, how much is free and what the upload needs"
assert_not_contains "$OUT$ERR" "Empty reply" "no dropped connection"
assert_eq "v1" "$(acurl -s "$AGENT_URL/v1/apps/small/releases" | jq -r '[.[].id] | join(" ")')" "no release was recorded"
((bytes = $(blob_bytes), bytes < 1024 * 1024)) && pass "nothing of the 95 MiB was stored ($bytes bytes of blobs)" || fail "nothing of the 95 MiB was stored" "$bytes bytes of blobs"
expect_serving $APP "hello from 1" "v1 keeps serving"
unchanged "after the refused upload"
run dctl deploy --json
assert_jq "$(tail -n 1 <<<"$OUT")" '.event == "error" and .code == "disk_full" and .exit_code == 6' "--json: the error event has code disk_full and exit_code 6"

# 2. An upload that fits, but not twice (blob + release tree): refused when the
#    deployment is created, and its blob is collected.
new_big_file "$REPO" 35
run dctl deploy
assert_eq 6 "$RC" "a 35 MiB tree (stored, then refused for its release files): exit 6"
assert_match "$OUT$ERR" "the agent's disk is full: .* the release's files needs 35.0 MiB" "it names the release files as what does not fit"
expect_serving $APP "hello from 1" "v1 keeps serving"
unchanged "after the refused deployment"
run dctl agent prune --json
assert_jq "$OUT" '.bytes >= 35 * 1024 * 1024' "agent prune frees the refused deploy's blob"

# 3. A build that fills the disk: that deployment fails with the build's reason,
#    and its tree (the partial output) is removed, so the disk is usable again.
git -C "$REPO" rm -q big.bin
write_toml "$REPO" small 'build=echo building && dd if=/dev/zero of=fill.bin bs=1M count=200 && echo built' keep=1
commit_change "$REPO" "a build that fills the disk"
run dctl deploy
assert_eq 1 "$RC" "a build that runs out of space fails (exit 1)"
assert_contains "$OUT$ERR" "No space left on device" "the build's own error is shown"
assert_contains "$OUT$ERR" "its files were removed to free the disk" "the failure says its files were removed"
expect_serving $APP "hello from 1" "v1 keeps serving after the failed build"
failed=$(acurl -s "$AGENT_URL/v1/apps/small/releases" | jq -r '[.[] | select(.state == "FAILED")][0].id')
[[ $failed == v* && ! -e $(release_dir small "$failed") ]] && pass "the failed release $failed is listed, its tree is gone" ||
    fail "the failed release is listed, its tree is gone" "release: $failed, $(ls "$(release_dir small "$failed")" 2>&1 | head -3)"
write_toml "$REPO" small keep=1
commit_change "$REPO" "the usual build again"
assert_exit 0 dctl deploy -q
expect_serving $APP "hello from $(cat "$REPO/VERSION")" "the next deploy works and serves"

# 4. SQLite cannot write: a clear error, the agent stays up, state.db stays whole.
fallocate -l "$(($(df --output=avail -B1 "$SMALL" | tail -1) - 4096))" "$SMALL/filler" 2>/dev/null ||
    dd if=/dev/zero of="$SMALL/filler" bs=1M 2>/dev/null || true
pass "the tmpfs is filled ($(df --output=avail -h "$SMALL" | tail -1 | tr -d ' ') left)"
big_vars=()
for i in 1 2 3 4 5 6; do big_vars+=("BIG$i=$(head -c 40000 /dev/urandom | base64 -w0)"); done
run dctl env set "${big_vars[@]}"
assert_eq 6 "$RC" "env set on a full disk fails (exit 6)"
assert_contains "$OUT$ERR" "disk is full" "and says the disk is full"
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' "$AGENT_URL/v1/health")" "the agent still answers"
serving_now=$(fetch $APP /)
assert_eq 200 "$(fetch_code $APP /)" "the serving release keeps serving on a full disk ($serving_now)"
commit_change "$REPO" "one more" VERSION 500
run dctl deploy
assert_eq 6 "$RC" "a deploy on a full disk is refused up front (exit 6)"
rm -f "$SMALL/filler"
assert_eq ok "$(sqlite3 "$DATA/state.db" 'PRAGMA integrity_check')" "state.db is whole"
assert_exit 0 dctl env set "${big_vars[@]}"
pass "env set works once space is freed"

# 5. Deploys work again once space is freed.
run dctl deploy
assert_eq 0 "$RC" "a deploy works again once space is freed"
expect_serving $APP "hello from $(cat "$REPO/VERSION")" "and serves"

# 6. Inodes: a tree of many small files on a file system with bytes to spare but few inodes
#    left is refused up front, by its count of files, and the serving release keeps serving.
FEW=$TEST_TMP/few/data
mkdir -p "$FEW"
mount -t tmpfs -o size=64m,nr_inodes=900 tmpfs "$FEW" ||
    fail "a tmpfs of 900 inodes is mounted" "mount -t tmpfs failed"
start_agent few
make_app_repo few
APP=few
assert_exit 0 dctl deploy -q
expect_serving $APP "hello from 1" "v1 of few serves from the tmpfs of 900 inodes"
mkdir -p "$REPO/many"
for i in $(seq 1 450); do echo "file $i" >"$REPO/many/f$i.txt"; done
commit_change "$REPO" "450 small files" VERSION 2
run dctl deploy
assert_eq 6 "$RC" "450 more files where their blobs fit but the release's files do not: exit 6"
assert_match "$OUT$ERR" "the agent's disk is full: [0-9]+ more files fit in $FEW \(its file system has 900 inodes in all\), the release's files needs 45[0-9]" \
    "it says how many files fit and how many the release needs"
expect_serving $APP "hello from 1" "v1 keeps serving"
assert_eq "v1" "$(acurl -s "$AGENT_URL/v1/apps/few/releases" | jq -r '[.[].id] | join(" ")')" "no release was recorded"
run dctl agent df --json
assert_jq "$OUT" '.files == 900 and .free_files < 450 and .file_reserve >= 0' "agent df --json: the inodes in all, free and kept free"
run dctl agent df
assert_match "$OUT" "inodes +[0-9]+ free of 900" "agent df shows the inodes"
# More files than the inodes left: refused before anything is sent, by the count of blobs.
git -C "$REPO" rm -rq many
mkdir -p "$REPO/more"
for i in $(seq 1 1000); do echo "other $i" >"$REPO/more/g$i.txt"; done
commit_change "$REPO" "1000 small files" VERSION 3
blobs_before=$(find "$DATA/blobs" -type f | wc -l)
run dctl deploy
assert_eq 6 "$RC" "1000 files to a disk with fewer inodes left: exit 6"
assert_match "$OUT$ERR" "the agent's disk is full: [0-9]+ more files fit in $FEW .*, this upload needs 100[0-9]" \
    "the upload is refused by its count of files"
assert_eq "$blobs_before" "$(find "$DATA/blobs" -type f | wc -l)" "nothing of it was stored"
expect_serving $APP "hello from 1" "v1 keeps serving"
