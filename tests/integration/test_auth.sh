#!/usr/bin/env bash
# Scoped bearer tokens and the audit log against a real agent: 401 without a
# valid token, 403 for too low a scope or another app (and nothing written),
# token create/ls/revoke from deploy-agent and deployctl, expiry, the
# credentials file, the unix socket without a token, the audit's "who", and
# oversized or malformed bodies.
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent
ADMIN=$DEPLOYCTL_TOKEN
TOKEN_RE='^dpa_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$'
id_of() { cut -d_ -f2 <<<"$1"; }
secret_of() { printf '%s' "${1:17}"; } # after "dpa_" + 12 hex + "_" (a secret may hold '_')
agent_cli() { "$AGENT_BIN" "$@" --data-dir "$DATA"; }
make_app_repo hello
APP=hello

# --- the first start's admin token ------------------------------------------------
assert_eq 600 "$(stat -c %a "$DATA/admin.token")" "admin.token is mode 0600"
assert_match "$ADMIN" "$TOKEN_RE" "admin.token holds one token"
assert_contains "$(cat "$AGENT_LOG")" "$DATA/admin.token" "the agent log says where the admin token is"
restart_agent_keeps() {
    kill_agent -TERM
    restart_agent
    assert_eq "$ADMIN" "$(<"$DATA/admin.token")" "a restart keeps the admin token"
}
restart_agent_keeps

snapshot() { store_snapshot 2>/dev/null; }  # (access logs left out: lib.sh)
release_count() {
    acurl -s -H "Authorization: Bearer $ADMIN" "$AGENT_URL/v1/apps/hello/releases" |
        jq -r 'if type == "array" then length else 0 end'
}

# --- no token, a wrong token ------------------------------------------------------
mv "$CREDENTIALS" "$CREDENTIALS.saved"
unset DEPLOYCTL_TOKEN
run curl -s -D "$TEST_TMP/h" -o "$TEST_TMP/b" -w '%{http_code}' "$AGENT_URL/v1/apps"
assert_eq 401 "$OUT" "no token: GET /v1/apps is 401"
assert_match "$(cat "$TEST_TMP/h")" '^www-authenticate: Bearer' "no token: WWW-Authenticate: Bearer"
assert_eq unauthorized "$(jq -r .error.code "$TEST_TMP/b")" "no token: error code unauthorized"
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' "$AGENT_URL/v1/health")" "/v1/health needs no token"
run curl -s -o /dev/null -w '%{http_code}' "$AGENT_URL/v1/nosuch"
assert_eq 401 "$OUT" "no token: an unknown endpoint is 401 too (nothing to probe)"

BEFORE=$(snapshot)
assert_exit 3 dctl deploy
assert_contains "$ERR" "HTTP 401" "no token: deployctl says the agent answered 401"
assert_contains "$ERR" "DEPLOYCTL_TOKEN" "no token: the message names DEPLOYCTL_TOKEN"
assert_contains "$ERR" "admin.token" "no token: the message says where a local admin token is"
assert_contains "$ERR" ".config/deployctl/credentials" "no token: the message names the credentials file"
assert_eq "$BEFORE" "$(snapshot)" "no token: nothing written"

WRONG="dpa_$(id_of "$ADMIN")_$(printf 'A%.0s' $(seq 43))"
DEPLOYCTL_TOKEN=$WRONG assert_exit 3 dctl status
assert_contains "$ERR" "unknown token" "a wrong secret for a real id: 401 unknown token"
api GET /v1/apps -H "Authorization: Bearer nonsense"
assert_eq 401 "$API_STATUS" "a malformed token: 401"
assert_contains "$API_BODY" "malformed" "a malformed token: says so"
api GET /v1/apps -H "Authorization: Basic $(printf 'a:b' | base64)"
assert_eq 401 "$API_STATUS" "another scheme: 401"
export DEPLOYCTL_TOKEN=$ADMIN

# --- creating tokens: deploy-agent and deployctl ----------------------------------
run agent_cli token create --app hello --scope read --name reader
assert_eq 0 "$RC" "deploy-agent token create: exit 0"
READ_T=$OUT
assert_match "$READ_T" "$TOKEN_RE" "deploy-agent token create: stdout is the token alone"
assert_contains "$ERR" "read on hello" "deploy-agent token create: stderr explains"
assert_exit 2 agent_cli token create --scope read
assert_contains "$ERR" "app" "deploy-agent token create without --app/--all-apps: usage error"

assert_exit 0 dctl token create --app hello --scope deploy --name ci
DEPLOY_T=$OUT
assert_match "$DEPLOY_T" "$TOKEN_RE" "deployctl token create: stdout is the token alone"
assert_exit 0 dctl token create --app other --scope deploy --name other --json
OTHER_T=$(jq -r .token <<<"$OUT")
assert_match "$OTHER_T" "$TOKEN_RE" "deployctl token create --json: .token"
assert_eq other "$(jq -r .app <<<"$OUT")" "deployctl token create --json: .app"
assert_exit 2 dctl token create --scope deploy
assert_contains "$ERR" "--all-apps" "deployctl token create without an app: usage error"

# --- a read token cannot deploy, and writes nothing -------------------------------
BEFORE=$(snapshot)
DEPLOYCTL_TOKEN=$READ_T assert_exit 3 dctl deploy
assert_contains "$ERR" "HTTP 403" "read token: deploy refused with 403"
assert_contains "$ERR" "deploy scope" "read token: the message names the scope needed"
assert_eq "$BEFORE" "$(snapshot)" "read token: no release, no blob written"
assert_eq 0 "$(release_count)" "read token: no release recorded"
# An upload straight to the blob store: refused before a byte is stored.
head -c 4000000 /dev/urandom >"$TEST_TMP/big.bin"
DIGEST=$(sha256sum "$TEST_TMP/big.bin" | cut -d' ' -f1)
api PUT "/v1/blobs/$DIGEST" -H "Authorization: Bearer $READ_T" --data-binary "@$TEST_TMP/big.bin"
assert_eq 403 "$API_STATUS" "read token: PUT blob is 403 (answered, not reset)"
assert_eq forbidden "$(jq -r .error.code <<<"$API_BODY")" "read token: error code forbidden"
api PUT "/v1/blobs/$DIGEST" -H "Authorization: Bearer $WRONG" --data-binary "@$TEST_TMP/big.bin"
assert_eq 401 "$API_STATUS" "wrong token: PUT of 4 MB is 401 (answered, not reset)"
assert_eq "$BEFORE" "$(snapshot)" "refused uploads: nothing under blobs/"

# --- a token for another app ------------------------------------------------------
DEPLOYCTL_TOKEN=$OTHER_T assert_exit 3 dctl deploy
assert_contains "$ERR" "app hello" "app-other token on hello: 403 names the app needed"
# (Blobs belong to no app: its deploy scope may upload them, as the docs say.)
assert_eq 0 "$(release_count)" "app-other token: no release of hello"
assert_false "app-other token: nothing under apps/hello" test -e "$DATA/apps/hello"

# --- a deploy token deploys; read reads -------------------------------------------
DEPLOYCTL_TOKEN=$DEPLOY_T assert_exit 0 dctl deploy
expect_serving $APP "hello from 1" "deploy token: v1 live"
commit_change "$REPO" "Second" VERSION 2
DEPLOYCTL_TOKEN=$DEPLOY_T assert_exit 0 dctl deploy
expect_serving $APP "hello from 2" "deploy token: v2 live"
DEPLOYCTL_TOKEN=$DEPLOY_T assert_exit 0 dctl rollback
expect_serving $APP "hello from 1" "deploy token: rolled back to v1"
DEPLOYCTL_TOKEN=$READ_T assert_exit 0 dctl status
assert_contains "$OUT" "v1" "read token: status works"
DEPLOYCTL_TOKEN=$DEPLOY_T assert_exit 3 dctl token ls
assert_contains "$ERR" "admin scope" "deploy token: token ls needs admin"

# --- ls and revoke ----------------------------------------------------------------
assert_exit 0 dctl token ls
assert_contains "$OUT" "$(id_of "$READ_T")" "deployctl token ls: lists the read token"
assert_contains "$OUT" "reader" "deployctl token ls: shows names"
for t in "$ADMIN" "$READ_T" "$DEPLOY_T" "$OTHER_T"; do
    assert_not_contains "$OUT" "$(secret_of "$t")" "deployctl token ls: no secret shown"
done
assert_exit 0 dctl token ls --json
assert_jq "$OUT" "length == 4 and all(.[]; has(\"token\") | not)" "deployctl token ls --json: 4 tokens, no secrets"
run agent_cli token ls
assert_eq 0 "$RC" "deploy-agent token ls: exit 0"
assert_contains "$OUT" "$(id_of "$DEPLOY_T")" "deploy-agent token ls: lists the deploy token"
HASH=$(sqlite3 "$DATA/state.db" "SELECT secret_hash FROM api_tokens WHERE id = '$(id_of "$DEPLOY_T")'")
assert_not_contains "$OUT" "$HASH" "deploy-agent token ls: no hash shown"
DUMP=$(sqlite3 "$DATA/state.db" .dump)
for t in "$ADMIN" "$READ_T" "$DEPLOY_T" "$OTHER_T"; do
    assert_not_contains "$DUMP" "$(secret_of "$t")" "state.db never holds a token's secret"
done

assert_exit 0 dctl token revoke "$(id_of "$READ_T")"
DEPLOYCTL_TOKEN=$READ_T assert_exit 3 dctl status
assert_contains "$ERR" "revoked" "deployctl token revoke: the next request is 401 revoked"
api POST /v1/apps/hello/rollback -H "Authorization: Bearer $READ_T" -H 'Content-Type: application/json' --data '{}'
assert_eq 401 "$API_STATUS" "a revoked token: a rollback is 401"
run agent_cli token revoke "$(id_of "$OTHER_T")"
assert_eq 0 "$RC" "deploy-agent token revoke (while the agent runs): exit 0"
api GET /v1/apps/other -H "Authorization: Bearer $OTHER_T"
assert_eq 401 "$API_STATUS" "deploy-agent token revoke: the running agent refuses it at once"
assert_exit 2 agent_cli token revoke ffffffffffff
assert_exit 0 dctl token ls --json
assert_jq "$OUT" "map(select(.state == \"revoked\")) | length == 2" "token ls: two revoked tokens"

# --- expiry -----------------------------------------------------------------------
run agent_cli token create --all-apps --scope read --expires 1s
SHORT_T=$OUT
api GET /v1/apps -H "Authorization: Bearer $SHORT_T"
assert_eq 200 "$API_STATUS" "a token with --expires 1s works at first"
sleep 1.2
api GET /v1/apps -H "Authorization: Bearer $SHORT_T"
assert_eq 401 "$API_STATUS" "an expired token: 401"
assert_contains "$API_BODY" "expired" "an expired token: says so"

# --- the credentials file ---------------------------------------------------------
unset DEPLOYCTL_TOKEN
mkdir -p "$(dirname "$CREDENTIALS")"
printf '# tokens\n%s %s\n' "$AGENT_URL" "$DEPLOY_T" >"$CREDENTIALS"
chmod 600 "$CREDENTIALS"
assert_exit 0 dctl releases
assert_contains "$OUT" "v2" "credentials file (0600): its token is used"
chmod 644 "$CREDENTIALS"
assert_exit 3 dctl releases
assert_contains "$ERR" "chmod 600" "credentials file 0644: refused, says how to fix it"
chmod 600 "$CREDENTIALS"
export DEPLOYCTL_TOKEN=$ADMIN
assert_exit 3 dctl token ls
assert_contains "$ERR" "admin scope" "the file's line (a deploy token) wins over DEPLOYCTL_TOKEN (admin)"
assert_contains "$ERR" "refused the token for it in $CREDENTIALS" "a line's token refused: the message names the file"
add_credentials "$AGENT_URL" "$ADMIN"

# --- deployctl login --------------------------------------------------------------
mv "$CREDENTIALS" "$CREDENTIALS.before-login"
unset DEPLOYCTL_TOKEN
run "$DEPLOYCTL_BIN" login "$AGENT_URL" <<<"$WRONG"
assert_eq 3 "$RC" "login with a wrong token: exit 3"
assert_contains "$ERR" "$AGENT_URL refused the token given" "login with a wrong token: names the agent"
assert_false "login with a wrong token: no credentials file written" test -e "$CREDENTIALS"
run "$DEPLOYCTL_BIN" login "$AGENT_URL" <<<"$ADMIN"
assert_eq 0 "$RC" "login with the admin token: exit 0"
assert_contains "$ERR" "added its line in $CREDENTIALS" "login: says where the token went"
assert_not_contains "$OUT$ERR" "$(secret_of "$ADMIN")" "login: never prints the token"
assert_eq 600 "$(stat -c %a "$CREDENTIALS")" "login: the credentials file is mode 0600"
XDG_CONFIG_HOME=$TEST_TMP/fresh-config run "$DEPLOYCTL_BIN" login "$AGENT_URL" <<<"$ADMIN"
assert_eq 0 "$RC" "login with no config folder yet: exit 0"
assert_eq 700 "$(stat -c %a "$TEST_TMP/fresh-config/deployctl")" "login: the folder it creates is mode 0700"
assert_exit 0 dctl token ls
assert_contains "$OUT" "$(id_of "$ADMIN")" "after login, without DEPLOYCTL_TOKEN: token ls works"
SAVED=$(cat "$CREDENTIALS")
run "$DEPLOYCTL_BIN" login "$AGENT_URL" <<<"$WRONG"
assert_eq 3 "$RC" "login again with a wrong token: exit 3"
assert_eq "$SAVED" "$(cat "$CREDENTIALS")" "login with a wrong token: the file is unchanged"
run "$DEPLOYCTL_BIN" --json login "$AGENT_URL" <<<"$ADMIN"
assert_jq "$OUT" '.event == "login" and .replaced and .v == 1' "login --json: a login event, the line replaced"
assert_eq 1 "$(grep -c "^$AGENT_URL " "$CREDENTIALS")" "login again: one line for the agent"
export DEPLOYCTL_TOKEN=$ADMIN

# --- the unix socket needs no token -----------------------------------------------
run curl -s --unix-socket "$AGENT_SOCKET" -o /dev/null -w '%{http_code}' http://agent/v1/apps/hello
assert_eq 200 "$OUT" "unix socket: GET without a token"
run env -u SSH_CONNECTION curl -s --unix-socket "$AGENT_SOCKET" -w '%{http_code}' -X DELETE http://agent/v1/apps/hello/releases/v2
assert_contains "$OUT" "200" "unix socket: DELETE without a token"

# --- the audit --------------------------------------------------------------------
assert_exit 0 dctl audit --json -a hello
AUDIT=$(jq -s . <<<"$OUT")
DEPLOY_ID=$(id_of "$DEPLOY_T")
assert_jq "$AUDIT" "any(.[]; .who == \"token:$DEPLOY_ID\" and .method == \"POST\" and .path == \"/v1/apps/hello/deployments\" and .release == \"v1\" and .status == 201 and .result == \"ok\")" \
    "audit: the deploy of v1, by the deploy token"
assert_jq "$AUDIT" "any(.[]; .who == \"token:$DEPLOY_ID\" and .path == \"/v1/apps/hello/rollback\" and .release == \"v1\" and .result == \"ok\")" \
    "audit: the rollback, by the deploy token"
assert_jq "$AUDIT" "any(.[]; .who == \"token:$(id_of "$OTHER_T")\" and .status == 403 and .error == \"forbidden\")" \
    "audit: the refused deploy, with who and 403"
assert_jq "$AUDIT" "any(.[]; .who == \"unix:$(id -un)\" and .method == \"DELETE\" and .release == \"v2\")" \
    "audit: the unix socket's caller is unix:USER"
assert_jq "$AUDIT" "all(.[]; .status != 401)" \
    "audit: a refused token (the revoked one's rollback) is no row of its own: failed logins are one row per address and minute"
assert_jq "$AUDIT" "all(.[]; .app == \"hello\")" "audit -a hello: only hello"
assert_jq "$AUDIT" "all(.[]; .method != \"GET\")" "audit: reads are not recorded"
assert_exit 0 dctl audit
assert_match "$OUT" "WHEN +WHO +WHAT +RESULT" "audit: a table"
assert_contains "$OUT" "token:$DEPLOY_ID (ci)" "audit table: who with the token's name"
api GET "/v1/audit?limit=1000"
assert_jq "$API_BODY" "all(.[]; .status != 401 and .who != \"anonymous\")" \
    "audit: refused anonymous calls are no rows of their own (counted per address and minute)"
assert_not_contains "$API_BODY" "$(secret_of "$DEPLOY_T")" "audit: no token secret"
assert_exit 0 dctl audit --limit 1 --json
assert_eq 1 "$(grep -c . <<<"$OUT")" "audit --limit 1: one entry"
run agent_cli token create --app other --scope read
OTHER_READ=$OUT
api GET "/v1/audit" -H "Authorization: Bearer $OTHER_READ"
assert_jq "$API_BODY" "all(.[]; .app == \"other\")" "audit with a token for app other: only other's rows"
api GET "/v1/audit?app=hello" -H "Authorization: Bearer $OTHER_READ"
assert_eq 403 "$API_STATUS" "audit of hello with a token for other: 403"
api GET "/v1/audit?limit=0"
assert_eq 400 "$API_STATUS" "audit?limit=0: 400"

# --- oversized and malformed bodies -----------------------------------------------
BEFORE=$(snapshot)
# raw_request METHOD PATH CONTENT-LENGTH TOKEN: sends headers only, prints the status line.
raw_request() {
    exec 3<>"/dev/tcp/127.0.0.1/$AGENT_PORT"
    printf '%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
        "$1" "$2" "$4" "$3" >&3
    timeout 5 head -n 1 <&3 | tr -d '\r'
    exec 3<&-
}
assert_contains "$(raw_request POST /v1/apps/hello/deployments 100000000 "$ADMIN")" " 413" \
    "a 100 MB JSON body: 413 from Content-Length"
assert_contains "$(raw_request POST /v1/apps/hello/deployments 100000000 "$WRONG")" " 401" \
    "a 100 MB JSON body with a wrong token: 401 first"
assert_contains "$(raw_request PUT "/v1/blobs/$DIGEST" 999999999999 "$ADMIN")" " 413" \
    "a 1 TB blob: 413"
assert_contains "$(raw_request POST /v1/tokens 100000 "$ADMIN")" " 413" \
    "a 100 KB token request: 413 (small routes take 64 KiB)"
assert_contains "$(raw_request POST /v1/apps/hello/rollback 100000 "$ADMIN")" " 413" \
    "a 100 KB rollback request: 413"
assert_contains "$(raw_request GET /v1/apps 1000000 "$ADMIN")" " 413" \
    "a GET with a 1 MB body: 413"
api POST /v1/apps/hello/deployments -H 'Content-Type: application/json' --data '{"config": '
assert_eq 400 "$API_STATUS" "malformed JSON: 400"
api POST /v1/tokens -H 'Content-Type: application/json' --data '{"scope":"admin","all_apps":"yes"}'
assert_eq 400 "$API_STATUS" "POST /v1/tokens with a bad field: 400"
api POST /v1/tokens -H 'Content-Type: application/json' --data '{"scope":"root","app":"hello"}'
assert_eq 400 "$API_STATUS" "POST /v1/tokens with an unknown scope: 400"
api POST /v1/tokens -H 'Content-Type: application/json' --data "$(printf '[%.0s' $(seq 200))"
assert_eq 400 "$API_STATUS" "POST /v1/tokens nested 200 deep: 400"
api DELETE "/v1/apps/hello/releases/..%2F..%2Fetc"
assert_match "$API_STATUS" '^4[0-9][0-9]$' "a hostile release path: 4xx ($API_STATUS)"
assert_eq "$BEFORE" "$(snapshot)" "oversized and malformed bodies: nothing written"
assert_eq 4 "$(sqlite3 "$DATA/state.db" "SELECT COUNT(*) FROM api_tokens WHERE revoked_at = ''")" \
    "rejected token requests created no token"

# --- failed logins: a line per address and minute, written at the latest on stop ----
kill_agent -TERM
LOGS=$(cat "${IT_AGENT_LOGS[@]}")
assert_match "$LOGS" "warn: auth: [0-9]+ failed logins from 127\.0\.0\.1 in the last [0-9]+s, last token name prefix" \
    "the refused tokens of this test are logged, per address and minute"
assert_not_contains "$LOGS" "$(secret_of "$WRONG")" "the log holds no secret of a refused token"
assert_not_contains "$LOGS" "$(secret_of "$READ_T")" "the log holds no secret of the revoked token"

log "$CHECKS checks passed"
