#!/usr/bin/env bash
# A secret reaches a container app's environment through the engine CLI's own
# environment (`docker run --env NAME`, no value on any argv), and the
# container's output is redacted in the app log. An image build is refused a
# secret (docker keeps --build-arg values in the image history).
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

SECRET="it-$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
SECRET_SHA=$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)
APP=csecret

make_engine_wrapper
AGENT_EXTRA_ARGS=(--engine-bin "$WRAPPER")
AGENT_ENGINE=docker start_agent

CMD='echo "app out: $API_TOKEN"; echo "app err: $API_TOKEN" >&2; printf %s "$API_TOKEN" | sha256sum | cut -d" " -f1 > /site/token.sha; (while :; do echo "tick $API_TOKEN"; sleep 0.3; done) & exec httpd -f -p 127.0.0.1:$PORT -h /site'
make_container_repo $APP cmd="$CMD"

set_secret() { printf '%s' "$2" | dctl env set --secret "$1"; }
run set_secret API_TOKEN "$SECRET"
assert_eq 0 "$RC" "env set --secret API_TOKEN"
assert_exit 0 dctl env set PLAIN_VAR=plain-value

assert_exit 0 dctl deploy
assert_eq "$SECRET_SHA" "$(fetch $APP /token.sha)" "the container got the secret (its hash served)"
name=$(container_name $APP v1)
assert_contains "$(cinspect "$name" '{{range .Config.Env}}{{println .}}{{end}}')" "PLAIN_VAR=plain-value" "the container got the plain variable"
assert_contains "$(cat "$ARGV_LOG")" "--env API_TOKEN " "docker run got --env API_TOKEN without a value"
assert_not_contains "$(cat "$ARGV_LOG")" "$SECRET" "the secret is on no engine CLI argv"

app_log=$DATA/apps/$APP/logs/v1.app.log
wait_until 10 grep -q 'app err: \[redacted\]' "$app_log" || fail "container output reaches the app log redacted" "$(excerpt "$app_log")"
assert_contains "$(cat "$app_log")" "app out: [redacted]" "container stdout is redacted"
assert_exit 0 dctl logs v1
assert_contains "$OUT" "app out: [redacted]" "deployctl logs shows [redacted]"
hits=$(grep -rlaF -- "$SECRET" "$DATA" "$TEST_TMP"/agent/*.log "$TEST_TMP"/*.out "$TEST_TMP"/*.err 2>/dev/null || true)
assert_eq "" "$hits" "the secret value is in no file of the data dir or the logs"

# The secret replaced (the running container keeps the old value), then the
# agent killed and restarted: it follows the container's output again, and
# still redacts the value the container started with.
run set_secret API_TOKEN "it2-$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
assert_eq 0 "$RC" "env set --secret API_TOKEN again: a new value"
kill_agent -9
AGENT_ENGINE=docker restart_agent
ticks=$(grep -c 'tick \[redacted\]' "$app_log")
wait_until 10 bash -c '(( $(grep -c "tick \[redacted\]" "$1") > $2 ))' _ "$app_log" "$ticks" ||
    fail "after an agent restart the container's output is followed again, redacted" "$(excerpt "$app_log")"
pass "after an agent restart the container's output is followed again, redacted"
hits=$(grep -rlaF -- "$SECRET" "$DATA" "$TEST_TMP"/agent/*.log 2>/dev/null || true)
assert_eq "" "$hits" "after the restart the secret value is still in no file"

# An image build is never given a secret.
write_container_toml "$REPO" $APP extra='' 
sed -i 's/^\[build\]$/[build]\nsecrets = ["API_TOKEN"]/' "$REPO/deploy.toml"
commit_change "$REPO" "build.secrets on an image build"
assert_exit 1 dctl deploy
assert_contains "$OUT$ERR" "an image build cannot be given a secret safely" "an image build with build.secrets is refused, with the reason"
assert_eq v1 "$(dctl --json status | jq -r .production)" "v1 still PRODUCTION"
