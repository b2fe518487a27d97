#!/usr/bin/env bash
# Paths and sizes the agent's store keeps faithfully: a file name with a control character
# (C0, DEL, C1) or that is not UTF-8 is refused by `deployctl deploy` when it packages the
# tree (exit 2, the name escaped, nothing sent), and by the agent when a manifest sent
# straight to the API names it (400 bad_path); a manifest whose declared size is not the
# stored blob's is refused (400 size_mismatch). Nothing is created, the serving release
# stays; renaming the file, as the error says, deploys.
source "$(dirname "$0")/lib.sh"
require_binaries

start_and_deploy_hello "baseline: v1 served"

remember_store
assert_eq v1 "$BASE_RELEASES" "baseline: one release"

# unchanged WHAT: no release, no file under DATA/apps or DATA/blobs, v1 still serving.
unchanged() {
    assert_store_unchanged "$1"
    expect_serving "$APP" "hello from 1" "$1: v1 still serving"
}

NL=$'\n'
C1=$(printf '\xc2\x85')     # U+0085 NEXT LINE, as UTF-8
LATIN1=$(printf '\xe9')     # "é" in Latin-1: not UTF-8
ESC=$(printf '\x1b')

# --- deployctl refuses the tree before sending anything ---------------------------
# refused_by_cli WHAT NAME SHOWN: commits a file NAME, deploys: exit 2 naming it as SHOWN.
refused_by_cli() {
    local what=$1 name=$2 shown=$3 digest
    printf 'the file named %s, %s\n' "$what" "$RANDOM" >"$REPO/$name"
    digest=$(sha256sum <"$REPO/$name" | cut -d' ' -f1)
    commit_change "$REPO" "Add a file with $what in its name" VERSION "2"
    assert_exit 2 dctl deploy
    assert_contains "$ERR" "\"$shown\"" "deploy, $what: the error names the file, escaped"
    assert_contains "$ERR" "git mv" "deploy, $what: the error says to rename it"
    assert_contains "$ERR" ".gitignore" "deploy, $what: or to leave it out"
    assert_not_contains "$ERR" "$name" "deploy, $what: the raw name is not printed"
    assert_eq "" "$(find "$DATA/blobs" -name "$digest" -print)" "deploy, $what: its content was not uploaded"
    unchanged "deploy, $what"
    git -C "$REPO" reset -q --hard HEAD~1
}

refused_by_cli "a newline" "bad${NL}name.txt" 'bad\nname.txt'
refused_by_cli "a C1 control character" "nel${C1}.txt" 'nel\u0085.txt'
refused_by_cli "an escape sequence" "${ESC}[31mred" '\x1b[31mred'
refused_by_cli "bytes that are not UTF-8" "caf${LATIN1}.txt" 'caf\xe9.txt'

# --- the same manifests straight to the API ---------------------------------------
BLOB=$TEST_TMP/blob.txt
printf 'evil payload\n' >"$BLOB" # 13 bytes
DIGEST=$(sha256sum "$BLOB" | cut -d' ' -f1)
api PUT "/v1/blobs/$DIGEST" --data-binary "@$BLOB" -H 'Content-Type: application/octet-stream'
assert_eq 201 "$API_STATUS" "PUT a 13-byte blob: 201"
assert_jq "$API_BODY" '.size == 13' "the agent stored 13 bytes"
BASE_FILES=$(store_snapshot) # the blob store now legitimately holds that blob
CONFIG_JSON=$(jq -Rs . <"$REPO/deploy.toml")

# body FILES_JSON: a deployment of hello with these manifest entries.
body() {
    jq -n -c --argjson config "$CONFIG_JSON" --argjson files "$1" \
        '{config: $config, manifest: {files: $files}, commit: "", message: "hostile", dirty: false}'
}
f() { jq -n -c --arg p "$1" --arg d "$DIGEST" --argjson s "${2:-13}" '{path: $p, mode: "file", digest: $d, size: $s}'; }

# refused_by_api WHAT STATUS CODE TEXT BODY: POST BODY, expect STATUS and CODE, TEXT in the message.
refused_by_api() {
    local what=$1 status=$2 code=$3 text=$4
    api POST /v1/apps/hello/deployments -H 'Content-Type: application/json' --data-binary "$5"
    local answer=$API_BODY
    assert_eq "$status" "$API_STATUS" "API, $what: $status"
    assert_jq "$answer" ".error.code == \"$code\"" "API, $what: error code $code"
    assert_contains "$(jq -r '.error.message' <<<"$answer")" "$text" "API, $what: the message says what"
    unchanged "API, $what"
}

refused_by_api 'a newline in a path' 400 bad_path '"a\nb" contains a newline (U+000A)' \
    "$(body "[$(f index.html), $(f "a${NL}b")]")"
refused_by_api 'a C1 character (U+0085) in a path' 400 bad_path '"nel\u0085" contains a control character (U+0085)' \
    "$(body "[$(f index.html), $(f "nel${C1}")]")"
refused_by_api 'an escape sequence in a path' 400 bad_path '"\x1b]0;owned\x07" contains an escape character (U+001B)' \
    "$(body "[$(f index.html), $(f "${ESC}]0;owned$(printf '\x07')")]")"
refused_by_api 'a DEL in a path' 400 bad_path '"x\x7f" contains a delete character (U+007F)' \
    "$(body "[$(f index.html), $(f "x$(printf '\x7f')")]")"
refused_by_api 'a newline in a symlink target' 400 bad_path 'contains a newline' \
    "$(body "[$(f index.html), $(jq -n -c --arg t "index.html${NL}" '{path: "l", mode: "symlink", target: $t}')]")"
# jq would replace bytes that are not UTF-8; put them in by hand.
raw=$(body "[$(f index.html), $(f PLACEHOLDER)]")
raw=${raw/PLACEHOLDER/caf${LATIN1}}
refused_by_api 'a path that is not UTF-8' 400 bad_request 'not valid UTF-8 at byte' "$raw"
raw=$(body "[$(f index.html), $(f PLACEHOLDER)]")
raw=${raw/PLACEHOLDER/lone$(printf '\x80')}
refused_by_api 'a lone continuation byte in a path' 400 bad_request 'not valid UTF-8 at byte' "$raw"

# --- a declared size that is not the stored blob's ----------------------------------
refused_by_api '1 TB declared for a 13-byte blob' 400 size_mismatch \
    '"big.bin" declares 1000000000000 bytes but its blob '"$DIGEST"' holds 13 bytes' \
    "$(body "[$(f index.html), $(f big.bin 1000000000000)]")"
refused_by_api '12 bytes declared for a 13-byte blob' 400 size_mismatch 'declares 12 bytes' \
    "$(body "[$(f small.bin 12)]")"

# --- the same through the Merkle tree: nodes sent to POST /v1/trees/missing ----------
# A node is a JSON array of [name, kind, digest, size] (docs/api.md); jq -c writes the
# same compact bytes the CLI does.
node_entry() { jq -n -c --arg n "$1" --arg d "$DIGEST" --argjson s "${2:-13}" '[$n, "f", $d, $s]'; }

# refused_node WHAT TEXT NODE: sending NODE is refused with 400 bad_path naming TEXT.
refused_node() {
    local what=$1 text=$2
    api POST /v1/trees/missing -H 'Content-Type: application/json' \
        --data-binary "$(jq -n -c --arg node "$3" '{nodes: [$node]}')"
    local answer=$API_BODY
    assert_eq 400 "$API_STATUS" "tree, $what: 400"
    assert_jq "$answer" '.error.code == "bad_path"' "tree, $what: error code bad_path"
    assert_contains "$(jq -r '.error.message' <<<"$answer")" "$text" "tree, $what: the message says what"
    unchanged "tree, $what"
}

refused_node 'a newline in a name' '"a\nb" contains a newline (U+000A)' "[$(node_entry "a${NL}b")]"
refused_node 'a C1 character in a name' '"nel\u0085" contains a control character (U+0085)' \
    "[$(node_entry "nel${C1}")]"
refused_node 'an escape sequence in a symlink target' 'contains an escape character (U+001B)' \
    "$(jq -n -c --arg t "${ESC}[2J" '[["l", "l", $t]]')"

# A tree whose file entry declares 1 TB for the 13-byte blob: the nodes are taken (sizes
# are checked against the store when a deployment names the tree), the deployment is not.
big_node="[$(node_entry big.bin 1000000000000),$(node_entry index.html)]"
big_root=$(printf '%s' "$big_node" | sha256sum | cut -d' ' -f1)
api POST /v1/trees/missing -H 'Content-Type: application/json' \
    --data-binary "$(jq -n -c --arg node "$big_node" --arg root "$big_root" '{roots: [$root], nodes: [$node]}')"
assert_eq 200 "$API_STATUS" "tree, 1 TB declared: its node is taken"
assert_jq "$API_BODY" '.missing_blobs == []' "tree, 1 TB declared: the blob is already stored"
refused_by_api 'a tree declaring 1 TB for a 13-byte blob' 400 size_mismatch \
    '"big.bin" declares 1000000000000 bytes but its blob '"$DIGEST"' holds 13 bytes' \
    "$(jq -n -c --argjson config "$CONFIG_JSON" --arg tree "$big_root" \
        '{config: $config, tree: $tree, commit: "", message: "hostile", dirty: false}')"

# --- the fix the error names: rename the file ---------------------------------------
name="bad${NL}name.txt"
printf 'renamed\n' >"$REPO/$name"
commit_change "$REPO" "Add a file with a newline in its name" VERSION "2"
assert_exit 2 dctl deploy
git -C "$REPO" mv "$name" "café-日本.txt"
commit_change "$REPO" "Rename it"
assert_exit 0 dctl deploy
expect_serving "$APP" "hello from 2" "after the rename: v2 serves"
assert_eq "renamed" "$(cat "$(release_dir hello v2)/café-日本.txt")" "v2 holds the renamed file under its UTF-8 name"
