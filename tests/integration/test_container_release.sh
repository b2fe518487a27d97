#!/usr/bin/env bash
# deploy.toml's [release] command on the docker engine: it runs in a one-off container of the
# new image (it sees a file only the image has, [env], $RELEASE), before the release's
# container starts; a failure or a timeout fails the release; no container of it is left.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

AGENT_ENGINE=docker start_agent
APP=crelease
MARKER_STEP='RUN ["/bin/sh","-c","echo only-in-the-image-$((40+2)) > /etc/it-marker"]'
# release_toml COMMAND [TIMEOUT]: the [env] and [release] tables for write_container_toml.
release_toml() {
    printf '[env]\nGREETING = "hi-from-env"\n\n[release]\ncommand = %s\n' "$(toml_string "$1")"
    [[ -n ${2:-} ]] && printf 'timeout = "%s"\n' "$2"
    return 0
}
MIGRATE='echo "marker: $(cat /etc/it-marker)"; echo "release $RELEASE, $GREETING, port=${PORT:-none}"'
make_container_repo $APP steps="$MARKER_STEP" extra="$(release_toml "$MIGRATE")"
# One-off containers of the release phase this agent made (all states).
release_one_offs() {
    ecli ps -a -q --filter "label=dev.deployctl.agent=$(agent_id)" \
        --filter "label=dev.deployctl.one-off=release" 2>/dev/null || true
}
no_one_offs() { [[ -z $(release_one_offs) ]]; }
set_release() {
    write_container_toml "$REPO" $APP extra="$(release_toml "$@")"
    commit_change "$REPO" "release command: $1"
}

# --- the command runs in a one-off container of the new image --------------------------
assert_exit 0 dctl --json deploy
J=$TEST_TMP/deploy1.ndjson
cp "$OUT_FILE" "$J"
lines=$(jq -r 'select(.event == "log" and .stream == "release") | .line' "$J")
assert_contains "$lines" "marker: only-in-the-image-42" "the command ran in the new image (it read a file only the image has)"
assert_contains "$lines" "release v1, hi-from-env, port=none" "the command got \$RELEASE and [env], no \$PORT"
assert_contains "$(jq -r 'select(.event == "log" and .stream == "system") | .line' "$J")" \
    "running release command: " "a system line names the command"
assert_eq "" "$(release_one_offs)" "no one-off container is left after the command ($(containers_summary $APP))"
expect_serving $APP "$APP site 1" "v1 serves"
assert_eq 1 "$(running_count $APP)" "one container runs: the app's"

# --- a failing command: FAILED, v1 keeps serving, no container left ------------------------
set_release 'echo "migration failed: X"; exit 3'
assert_exit 1 dctl deploy
assert_eq "release command exited with status 3: migration failed: X" "$(release_field $APP v2 error)" \
    "failing command: v2's reason"
assert_eq "" "$(release_one_offs)" "failing command: no one-off container is left"
expect_serving $APP "$APP site 1" "failing command: v1 still serves"
assert_eq "" "$(release_containers $APP v2 -a)" "failing command: v2 never got a container"

# --- a timeout: the container is removed by force ------------------------------------------
set_release 'echo waiting; sleep 30' 2s
assert_exit 1 dctl deploy
assert_eq "release command timed out after 2s" "$(release_field $APP v3 error)" "timeout: v3's reason"
assert_true "timeout: no one-off container is left ($(containers_summary $APP))" \
    wait_until 10 no_one_offs
expect_serving $APP "$APP site 1" "timeout: v1 still serves"

# --- an agent restart during the command: FAILED, its container removed ---------------------
set_release 'echo started-v4; sleep 60' 5m
assert_exit 0 dctl deploy --no-follow
running_one_off() { [[ -n $(ecli ps -q --filter "label=dev.deployctl.agent=$(agent_id)" --filter "label=dev.deployctl.one-off=release") ]]; }
assert_true "restart: the command's container runs" wait_until 60 running_one_off
# And one whose engine CLI died with it (made by hand here): the restarted agent removes both.
ecli run -d --label "dev.deployctl.agent=$(agent_id)" --label dev.deployctl.one-off=release \
    --label "it.deployctl.run=$IT_RUN_ID" "$(image_ref $APP v1)" /bin/sleep 60 >/dev/null
kill_agent -9
AGENT_ENGINE=docker restart_agent
assert_true "restart: no one-off container is left ($(containers_summary $APP))" wait_until 10 no_one_offs
assert_eq FAILED "$(release_state $APP v4)" "restart: v4 is FAILED"
assert_contains "$(release_field $APP v4 error)" "interrupted: the agent restarted during the release command" "restart: the reason"
expect_serving $APP "$APP site 1" "restart: v1 still serves"

pass "container release command: a one-off container of the new image, removed whatever happens"
