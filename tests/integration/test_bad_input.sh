#!/usr/bin/env bash
# Hostile or malformed input gets a clear error and changes nothing:
# broken deploy.toml, unknown keys, no agent, path traversal in manifests,
# corrupt blobs, symlinks leading out of the tree.
source "$(dirname "$0")/lib.sh"
require_binaries

start_and_deploy_hello "baseline: v1 served"

remember_store
assert_eq v1 "$BASE_RELEASES" "baseline: one release"

unchanged() { assert_store_unchanged "$1"; }

GOOD_TOML=$(cat "$REPO/deploy.toml")

# --- malformed deploy.toml --------------------------------------------------------
printf 'app = "hello\n[run]\ncommand = "x"\n' >"$REPO/deploy.toml"
commit_change "$REPO" "Unterminated string"
assert_exit 2 dctl deploy
assert_match "$ERR" 'deploy\.toml:1:[0-9]+' "unterminated string: error names deploy.toml:1:COL"
unchanged "unterminated string"

printf '%s\n' "$GOOD_TOML" | sed 's/^\[run\]$/[run]\nport = "x"/' >"$REPO/deploy.toml"
line=$(grep -n '^port = "x"' "$REPO/deploy.toml" | cut -d: -f1)
assert_ne "" "$line" "test setup: port = \"x\" written"
commit_change "$REPO" "Port is a string"
assert_exit 2 dctl deploy
assert_match "$ERR" "deploy\\.toml:$line:[0-9]+" "port = \"x\": error names deploy.toml:$line:COL"
assert_match "$ERR" 'port' "port = \"x\": error names the key"
unchanged "port = \"x\""

# --- unknown key, with a suggestion -----------------------------------------------
printf '%s\n' "$GOOD_TOML" | sed 's/^\[run\]$/[run]\nprot = 1/' >"$REPO/deploy.toml"
line=$(grep -n '^prot = 1' "$REPO/deploy.toml" | cut -d: -f1)
commit_change "$REPO" "Typo"
assert_exit 2 dctl deploy
assert_contains "$ERR" "prot" "unknown key: message names prot"
assert_match "$ERR" "port" "unknown key: message suggests port"
assert_match "$ERR" "deploy\\.toml:$line:[0-9]+" "unknown key: error names deploy.toml:$line:COL"
unchanged "unknown key"

printf '%s\n' "$GOOD_TOML" >"$REPO/deploy.toml"
commit_change "$REPO" "Good config again"

# --- no agent listening -----------------------------------------------------------
dead_port=$(free_port)
run timeout 20 "$DEPLOYCTL_BIN" -C "$REPO" --host "http://127.0.0.1:$dead_port" --no-color deploy
assert_eq 3 "$RC" "agent not running: exit 3"
assert_contains "$ERR" "127.0.0.1:$dead_port" "agent not running: message names the address"
run timeout 20 "$DEPLOYCTL_BIN" -C "$REPO" --host "http://127.0.0.1:$dead_port" --no-color status
assert_eq 3 "$RC" "agent not running: status exits 3 too"

# --- hostile manifests straight to the API ----------------------------------------
BLOB=$TEST_TMP/blob.txt
printf 'evil payload\n' >"$BLOB"
DIGEST=$(sha256sum "$BLOB" | cut -d' ' -f1)
SIZE=$(stat -c %s "$BLOB")
api PUT "/v1/blobs/$DIGEST" --data-binary "@$BLOB" -H 'Content-Type: application/octet-stream'
assert_eq 201 "$API_STATUS" "PUT blob with a matching digest: 201"
BASE_FILES=$(store_snapshot) # the blob store now legitimately holds that blob
CONFIG_JSON=$(jq -Rs . <"$REPO/deploy.toml")

# post_manifest DESCRIPTION FILES_JSON_ARRAY
post_manifest() {
    local what=$1 files=$2 body
    body=$(jq -n --argjson config "$CONFIG_JSON" --argjson files "$files" \
        '{config: $config, manifest: {files: $files}, commit: "", message: "hostile", dirty: false}')
    api POST /v1/apps/hello/deployments -H 'Content-Type: application/json' --data-binary "$body"
    local answer=$API_BODY
    if [[ $API_STATUS =~ ^4[0-9][0-9]$ ]]; then pass "$what: refused with $API_STATUS"; else
        fail "$what: refused with a 4xx" "expected: 4xx" "got: $API_STATUS $answer"
    fi
    assert_jq "$answer" '(.error.code | type == "string") and (.error.message | type == "string")' \
        "$what: JSON error body"
}

f() { jq -n -c --arg p "$1" --arg d "$DIGEST" --argjson s "$SIZE" '{path: $p, mode: "file", digest: $d, size: $s}'; }
l() { jq -n -c --arg p "$1" --arg t "$2" '{path: $p, mode: "symlink", target: $t}'; }

post_manifest '"../evil"' "[$(f index.html), $(f ../evil)]"
post_manifest '"/etc/passwd"' "[$(f index.html), $(f /etc/passwd)]"
post_manifest '"a/../../b"' "[$(f index.html), $(f a/../../b)]"
post_manifest '"a//b" (empty component)' "[$(f index.html), $(f a//b)]"
post_manifest 'symlink "link" -> "../../outside"' "[$(f index.html), $(l link ../../outside)]"
post_manifest 'symlink "abs" -> "/etc"' "[$(f index.html), $(l abs /etc)]"
post_manifest '"link/x" through a symlink' "[$(f index.html), $(l link sub), $(f sub/y), $(f link/x)]"
post_manifest 'digest not in the blob store' \
    "[$(jq -n -c '{path: "x", mode: "file", digest: "0000000000000000000000000000000000000000000000000000000000000000", size: 1}')]"
unchanged "hostile manifests"

api POST /v1/apps/other/deployments -H 'Content-Type: application/json' \
    --data-binary "$(jq -n --argjson config "$CONFIG_JSON" --argjson files "[$(f index.html)]" '{config: $config, manifest: {files: $files}}')"
answer=$API_BODY
assert_match "$API_STATUS" '^4' "app name in the URL differs from the config's app: 4xx ($API_STATUS)"
api POST /v1/apps/hello/deployments -H 'Content-Type: application/json' --data-binary '{"config": 1, "manifest": '
answer=$API_BODY
assert_eq 400 "$API_STATUS" "truncated JSON body: 400"
assert_jq "$answer" '.error.code | type == "string"' "truncated JSON body: JSON error"
api POST /v1/apps/hello/deployments -H 'Content-Type: application/json' \
    --data-binary "$(jq -n --arg config 'app = "hello' --argjson files "[$(f index.html)]" '{config: $config, manifest: {files: $files}}')"
answer=$API_BODY
assert_eq 400 "$API_STATUS" "malformed config text in the API: 400"
assert_contains "$(jq -r '.error.message // empty' <<<"$answer")" "deploy.toml:1:" "malformed config in the API: deploy.toml:1:COL"
unchanged "bad API requests"

evil=$(find "$TEST_TMP" \( -name evil -o -name outside \) -print | head -5)
assert_eq "" "$evil" "no file named evil/outside anywhere under the test folder"
assert_false "no /evil" test -e /evil
assert_false "no /outside" test -e /outside
assert_false "no /tmp/evil" test -e /tmp/evil

# --- a blob whose bytes do not match its digest -----------------------------------
WRONG=$(printf 'the bytes that were announced' | sha256sum | cut -d' ' -f1)
api PUT "/v1/blobs/$WRONG" --data-binary 'other bytes entirely' -H 'Content-Type: application/octet-stream'
answer=$API_BODY
assert_eq 400 "$API_STATUS" "PUT blob with mismatching bytes: 400"
assert_jq "$answer" '.error.code | type == "string"' "PUT blob with mismatching bytes: JSON error"
api POST /v1/blobs/missing -H 'Content-Type: application/json' --data-binary "{\"digests\":[\"$WRONG\",\"$DIGEST\"]}"
answer=$API_BODY
assert_eq "[\"$WRONG\"]" "$(jq -c .missing <<<"$answer")" "the corrupt blob is still missing, the good one present"
assert_eq "" "$(find "$DATA" -name "*$WRONG*" -print)" "no file named after the corrupt digest"
api PUT "/v1/blobs/not-a-digest" --data-binary 'x'
answer=$API_BODY
assert_match "$API_STATUS" '^4' "PUT blob with a malformed digest: 4xx ($API_STATUS)"
unchanged "bad blobs"

# --- a committed symlink pointing out of the tree ---------------------------------
ln -s ../../etc/passwd "$REPO/leak"
commit_change "$REPO" "Symlink out of the tree" VERSION "leaky $RANDOM"
assert_exit 2 dctl deploy
assert_contains "$ERR" "leak" "symlink out of the tree: the error names the link"
unchanged "symlink out of the tree"
expect_serving $APP "hello from 1" "after all of it: v1 still serving"
