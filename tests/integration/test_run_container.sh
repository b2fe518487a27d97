#!/usr/bin/env bash
# deployctl run on the docker engine: the command runs in a one-shot container
# of the release's image (docker run --rm) with the app's environment, its
# secret passed through the engine CLI's environment (never an argv), its
# output and exit status come back, and no container of it is left, also when
# deployctl is killed in the middle of it.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

SECRET="it-$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
SECRET_SHA=$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)
APP=crun

make_engine_wrapper
AGENT_EXTRA_ARGS=(--engine-bin "$WRAPPER")
AGENT_ENGINE=docker start_agent
make_container_repo $APP
printf '\n[env]\nFROM_TOML = "toml-value"\n' >>"$REPO/deploy.toml"
commit_change "$REPO" "[env]"
set_secret() { printf '%s' "$2" | dctl env set --secret "$1"; }
run set_secret API_TOKEN "$SECRET"
assert_eq 0 "$RC" "env set --secret API_TOKEN"
assert_exit 0 dctl deploy

# one_offs: the one-off containers of this agent that exist now.
one_offs() { docker ps -aq --filter "label=dev.deployctl.agent=$(agent_id)" --filter label=dev.deployctl.one-off; }

# --- output, exit status, environment ----------------------------------------------
assert_exit 7 dctl run -- sh -c 'echo "out $RELEASE $FROM_TOML"; echo err >&2; exit 7'
assert_eq "out v1 toml-value" "$OUT" "run: stdout has \$RELEASE and [env] of the app"
assert_eq "err" "$ERR" "run: stderr arrives apart"
assert_exit 0 dctl run -- sh -c 'printf %s "$API_TOKEN" | sha256sum | cut -d" " -f1'
assert_eq "$SECRET_SHA" "$OUT" "run: the command sees the app's secret"
assert_not_contains "$(cat "$ARGV_LOG")" "$SECRET" "no docker argv carries the secret's value"
assert_contains "$(grep '^run --rm ' "$ARGV_LOG")" "--env API_TOKEN" "the one-off gets the secret by name from the CLI's environment"
run bash -c "echo piped-in | '$DEPLOYCTL_BIN' -C '$REPO' --host '$AGENT_URL' --no-color run -- cat"
assert_eq 0 "$RC" "run -- cat with stdin piped: exit 0"
assert_eq "piped-in" "$OUT" "run: stdin reaches the container"
assert_exit 143 dctl run -- sh -c 'kill -TERM $$'
assert_exit 127 dctl run -- no-such-program
assert_eq "" "$(one_offs)" "no one-off container is left after the runs"

# --- -it: a shell in the container, through a real terminal ---------------------------
if command -v script >/dev/null; then
    FIFO=$TEST_TMP/tty.in
    mkfifo "$FIFO"
    { sleep 2; printf 'echo $((6*7))\r'; sleep 1; printf 'exit\r'; sleep 2; } >"$FIFO" &
    INNER="'$DEPLOYCTL_BIN' -C '$REPO' --host '$AGENT_URL' run -it -- sh; echo \"rc=\$?\""
    run timeout 60 script -qfec "$INNER" /dev/null <"$FIFO"
    assert_contains "$OUT" "42" "-it in a container: the shell ran echo \$((6*7))"
    assert_contains "$OUT" "rc=0" "-it in a container: exit ends deployctl with status 0"
    if grep -q $'\r\r' "$OUT_FILE"; then
        fail "-it in a container: lines end once (no doubled carriage return)" "$(od -c "$OUT_FILE" | head -20)"
    fi
    pass "-it in a container: lines end once (the container's terminal translates, ours passes bytes)"
else
    log "no script(1) here (bsdutils): run -it in a container is not checked"
fi

# --- deployctl killed: the container goes too ------------------------------------
"$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" --no-color run -- sleep 1000 \
    >"$TEST_TMP/sleep.out" 2>&1 </dev/null &
runner=$!
wait_until 30 bash -c "[[ -n \$(docker ps -q --filter label=dev.deployctl.agent=$(agent_id) --filter label=dev.deployctl.one-off) ]]" ||
    fail "the one-off container of run -- sleep 1000 starts" "$(excerpt "$TEST_TMP/sleep.out")" "agent log:" "$(excerpt "$AGENT_LOG")"
pass "run -- sleep 1000 runs in a container of its own"
kill -9 "$runner"
wait "$runner" 2>/dev/null || true
if wait_until 15 bash -c "[[ -z \$(docker ps -aq --filter label=dev.deployctl.agent=$(agent_id) --filter label=dev.deployctl.one-off) ]]"; then
    pass "deployctl killed: its container is removed"
else
    fail "deployctl killed: its container is removed within 15 s" "$(docker ps -a --filter label=dev.deployctl.one-off)" "agent log:" "$(excerpt "$AGENT_LOG")"
fi
expect_serving $APP "$APP site 1" "the app kept serving through the runs"

# --- the release's image gone: the run fails at once, no registry asked for it --------------
# (docker run --pull never: an image named deployctl/APP:vN-AGENT is the agent's own)
image=$(image_ref $APP v1)
docker rmi -f "$image" >/dev/null 2>&1 || fail "test setup: untag $image" "docker rmi -f failed"
started=$(date +%s%N)
run dctl run -- true
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
assert_ne 0 "$RC" "run in a release whose image is gone fails"
assert_match "$ERR$OUT" "[Nn]o such image" "it says the image is missing"
assert_not_contains "$ERR$OUT" "pull" "it did not try to pull the image from a registry"
log "the failed run took $elapsed_ms ms"
expect_serving $APP "$APP site 1" "the app keeps serving (its container runs without the tag)"
