#!/usr/bin/env bash
# deployctl env: a secret set on the agent reaches the app (not the build unless
# listed in [build] secrets), is stored encrypted, and never appears in plain
# text anywhere on the agent's disk or in any log: where the app or the build
# prints it, the logs say [redacted]. A wrong master key is a clear error that
# leaves the serving release alone; a re-adopted app's output stays redacted.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v sha256sum >/dev/null || { log "SKIP: needs sha256sum"; exit 77; }

SECRET="it-$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
SECRET_SHA=$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)
APP=vault

# The build says whether it sees API_TOKEN and keeps only its hash; the app
# prints it on stdout and stderr, keeps printing it every 0.3 s, and serves
# its hash (never the value) at /token.sha.
BUILD='echo "build sees: ${API_TOKEN:-nothing}"; mkdir -p public; echo ok > public/healthz; printf %s "${API_TOKEN:-}" | sha256sum | cut -d" " -f1 > public/build.sha'
RUN='echo "app stdout: $API_TOKEN"; echo "app stderr: $API_TOKEN" >&2; printf %s "$API_TOKEN" | sha256sum | cut -d" " -f1 > public/token.sha; echo "$MODE $TOML_ONLY" > public/mode; (while :; do echo "tick $API_TOKEN"; sleep 0.3; done) & exec busybox httpd -f -p 127.0.0.1:$PORT -h public'

start_agent
make_app_repo $APP build="$BUILD" run="$RUN"
# deploy.toml's own [env]: MODE is overridden by the agent's, TOML_ONLY is not.
printf '\n[env]\nMODE = "toml-mode"\nTOML_ONLY = "from-toml"\n' >>"$REPO/deploy.toml"
commit_change "$REPO" "[env] defaults"

# with_build_secrets NAME...: deploy.toml's [build] gets secrets = [...].
with_build_secrets() {
    write_toml "$REPO" $APP build="$BUILD" run="$RUN"
    local list="" name
    for name in "$@"; do list+="${list:+, }\"$name\""; done
    sed -i "s/^\[build\]\$/[build]\nsecrets = [$list]/" "$REPO/deploy.toml"
    commit_change "$REPO" "build.secrets = [$list]"
}

# no_plaintext WHEN: the value is in no file of the data dir (state.db and its
# WAL included), no agent log, no deployctl output file.
no_plaintext() {
    local hits
    hits=$(grep -rlaF -- "$SECRET" "$DATA" "$TEST_TMP"/agent/*.log "$TEST_TMP"/*.out "$TEST_TMP"/*.err 2>/dev/null || true)
    assert_eq "" "$hits" "$1: the secret value is in no file on disk"
}

# --- set before the first deploy ------------------------------------------------------
# set_secret NAME VALUE: `env set --secret NAME`, the value on stdin (never on an argv).
set_secret() { printf '%s\n' "$2" | dctl env set --secret "$1"; }
run set_secret API_TOKEN "$SECRET"
assert_eq 0 "$RC" "env set --secret API_TOKEN (value on stdin) before the first deploy"
assert_contains "$OUT" "takes effect when the app next starts (deployctl restart" "env set says when it takes effect"
assert_exit 0 dctl env set MODE=plain-mode-value
assert_exit 2 dctl env set PORT=80
assert_contains "$ERR" "reserved" "PORT is refused as reserved"
assert_exit 2 dctl env set 'BAD-NAME=x'
assert_exit 2 dctl env set --secret SHORT=1234
assert_contains "$ERR" "shorter than 8 bytes" "a secret shorter than 8 bytes is refused"
api GET /v1/apps/$APP/env
assert_eq 200 "$API_STATUS" "GET /v1/apps/$APP/env"
assert_jq "$API_BODY" '(.vars | map(.name)) == ["API_TOKEN", "MODE"]' "only the valid variables were stored"
assert_jq "$API_BODY" '.vars[0].secret == true and (.vars[0] | has("value") | not)' "the API never returns a secret value"

assert_exit 0 dctl env ls
assert_contains "$OUT" "API_TOKEN" "env ls names the secret"
assert_contains "$OUT" "(secret)" "env ls marks it secret"
assert_contains "$OUT" "plain-mode-value" "env ls shows plain values"
assert_not_contains "$OUT" "$SECRET" "env ls does not show the secret value"
assert_exit 0 dctl --json env ls
assert_jq "$OUT" '.event == "env" and (.vars[] | select(.name == "API_TOKEN") | .secret == true and (has("value") | not))' "env ls --json: secret without value"

# --- deploy: the app sees it, the build does not ----------------------------------------
assert_exit 0 dctl deploy
deploy_out=$OUT
assert_contains "$deploy_out" "build sees: nothing" "the build does not see a secret it does not list"
assert_eq "$SECRET_SHA" "$(fetch $APP /token.sha)" "the app got the secret (its hash served)"
assert_eq "plain-mode-value from-toml" "$(fetch $APP /mode)" "the agent's MODE overrides deploy.toml's; TOML_ONLY from deploy.toml"
# A changed variable reaches the app when it next starts: deployctl restart, no new release.
assert_exit 0 dctl env set MODE=restarted-mode-value
assert_eq "plain-mode-value from-toml" "$(fetch $APP /mode)" "env set alone leaves the running app as it was"
releases_before=$(dctl --json releases | jq length)
assert_exit 0 dctl restart
assert_eq "restarted-mode-value from-toml" "$(fetch $APP /mode)" "deployctl restart starts the app with the new value"
assert_eq "$releases_before" "$(dctl --json releases | jq length)" "restart makes no release"
assert_exit 0 dctl env set MODE=plain-mode-value
assert_exit 0 dctl restart
assert_eq "$(printf '' | sha256sum | cut -d' ' -f1)" "$(fetch $APP /build.sha)" "the build had no API_TOKEN"

app_log=$DATA/apps/$APP/logs/v1.app.log
wait_until 5 grep -q 'tick \[redacted\]' "$app_log" || fail "app log shows tick [redacted]" "$(excerpt "$app_log")"
assert_contains "$(cat "$app_log")" "app stdout: [redacted]" "app stdout is redacted in the app log"
assert_contains "$(cat "$app_log")" "app stderr: [redacted]" "app stderr is redacted in the app log"
assert_exit 0 dctl logs v1
assert_contains "$OUT" "[redacted]" "deployctl logs shows [redacted]"
assert_not_contains "$OUT" "$SECRET" "deployctl logs does not show the value"
redactor=$(pgrep -f 'deploy-agent log-redact' || true)
assert_ne "" "$redactor" "a log-redact writer runs beside the app"
for pid in $redactor; do
    assert_not_contains "$(tr '\0' ' ' </proc/$pid/cmdline) $(tr '\0' '\n' </proc/$pid/environ 2>/dev/null)" "$SECRET" "the writer's argv and environment hold no secret"
done
no_plaintext "after the first deploy"

# --- kill -9 + restart: the app keeps running, its output stays redacted ----------------
v1_pid=$(app_pid $APP v1)
kill_agent -9
restart_agent
assert_eq "$v1_pid" "$(app_pid $APP v1)" "the app was re-adopted, same process"
ticks=$(grep -c 'tick \[redacted\]' "$app_log")
wait_until 5 bash -c '(( $(grep -c "tick \[redacted\]" "$1") > $2 ))' _ "$app_log" "$ticks" ||
    fail "the app's later output is still written, redacted" "$(excerpt "$app_log")"
pass "the app's output after the agent restart is still redacted"
no_plaintext "after the agent restart"

# --- [build] secrets: the build sees a listed secret, its echo is redacted --------------
with_build_secrets API_TOKEN
assert_exit 0 dctl deploy
assert_contains "$OUT" "build sees: [redacted]" "a listed secret reaches the build; its echo is redacted"
assert_not_contains "$OUT" "$SECRET" "deploy output does not show the value"
assert_eq "$SECRET_SHA" "$(fetch $APP /build.sha)" "the build saw the real value"

with_build_secrets NOT_A_SECRET
assert_exit 1 dctl deploy
assert_contains "$OUT$ERR" "NOT_A_SECRET, which is not a secret" "an unknown name in build.secrets fails the deploy"
assert_eq v2 "$(dctl --json status | jq -r .production)" "v2 still PRODUCTION"
no_plaintext "after the build.secrets deploys"

# --- a tampered master key: a clear error, the serving release unaffected ---------------
cp "$DATA/keys/master.key" "$TEST_TMP/master.key.saved"
assert_eq 600 "$(stat -c %a "$DATA/keys/master.key")" "master.key is 0600"
assert_eq 700 "$(stat -c %a "$DATA/keys")" "keys/ is 0700"
v2_pid=$(app_pid $APP v2)
kill_agent -9
head -c 32 /dev/urandom >"$DATA/keys/master.key"
restart_agent
with_build_secrets API_TOKEN
assert_exit 1 dctl deploy --force # v2's tree and config: --force, or nothing would start
assert_contains "$OUT$ERR" "is not the one its secrets were encrypted with" "wrong master key: the deploy fails clearly"
run set_secret OTHER another-long-secret
assert_ne 0 "$RC" "wrong master key: env set --secret fails"
assert_contains "$ERR" "master key" "wrong master key: env set says why"
assert_eq v2 "$(dctl --json status | jq -r .production)" "wrong master key: v2 still PRODUCTION"
assert_eq "$v2_pid" "$(app_pid $APP v2)" "wrong master key: the serving app is untouched"
assert_eq "$SECRET_SHA" "$(fetch $APP /token.sha)" "wrong master key: the app still serves"
kill_agent -9
cp "$TEST_TMP/master.key.saved" "$DATA/keys/master.key"
restart_agent

# --- unset ---------------------------------------------------------------------------
assert_exit 2 dctl env unset API_TOKEN NOT_SET
assert_exit 0 dctl --json env ls
assert_jq "$OUT" '[.vars[].name] == ["API_TOKEN", "MODE"]' "a failed unset removed nothing"
assert_exit 0 dctl env unset API_TOKEN
assert_exit 0 dctl --json env ls
assert_jq "$OUT" '[.vars[].name] == ["MODE"]' "unset removed API_TOKEN"
write_toml "$REPO" $APP build="$BUILD" run="$RUN"
commit_change "$REPO" "no build secrets"
assert_exit 0 dctl deploy
assert_eq "$(printf '' | sha256sum | cut -d' ' -f1)" "$(fetch $APP /token.sha)" "after unset and a deploy, the app has no API_TOKEN"
no_plaintext "at the end"
