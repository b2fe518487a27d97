#!/usr/bin/env bash
# The same container app on an agent started with --engine podman: build,
# serve, redeploy, rollback. Podman support is best effort: without podman the
# test is skipped (also in CI); with podman it must work, and when podman cannot
# run containers here the test fails with podman's own error in view.
source "$(dirname "$0")/lib.sh"
require_binaries
if ! command -v podman >/dev/null 2>&1; then
    log "SKIP: podman is not installed (Debian: apt-get install podman catatonit); podman support is best effort, so this test skips even in CI"
    exit 77
fi
require_static_busybox
ENGINE_CLI=podman
note_engine podman
if ! podman_version=$(timeout 30 podman version --format '{{.Client.Version}}' 2>"$TEST_TMP/podman-version.err"); then
    fail "\`podman version\` answers" "$(excerpt "$TEST_TMP/podman-version.err" 10)"
fi
log "podman $podman_version"

AGENT_ENGINE=podman
start_agent
APP=cpodman
make_container_repo $APP

assert_exit 0 dctl --json agent info
assert_jq "$OUT" '.engine == "podman"' "agent info --json: engine == \"podman\""
assert_jq "$OUT" '(.engine_version | type) == "string" and (.engine_version | length) > 0' \
    "agent info --json: engine_version is a non-empty string"

# deploy_ok ID DESCRIPTION: the last `run dctl deploy` succeeded; otherwise fail
# with everything that says why (the release's error, the deploy output, the
# agent's logs for the release, podman's view of the containers).
deploy_ok() {
    if [[ $RC == 0 ]]; then
        pass "$2"
        return
    fi
    fail "$2" "deployctl exit status: $RC" \
        "release $1 error: $(release_field $APP "$1" error)" \
        "deploy stdout:" "$(excerpt "$OUT_FILE" 40)" "deploy stderr:" "$(excerpt "$ERR_FILE" 20)" \
        "deployctl logs $1:" "$(dctl logs "$1" 2>&1 | tail -n 30 | sed 's/^/  | /')" \
        "podman ps -a: $(containers_summary $APP)"
}

# --- first deploy --------------------------------------------------------------------------
run dctl deploy
deploy_ok v1 "podman: v1 deploys (build, run, health check)"
assert_contains "$OUT$ERR" "it-build-output-42" "podman: the build's output reached the user"
expect_serving $APP "$APP site 1" "podman: v1 served through the proxy"
port1=$(release_field $APP v1 port)
assert_match "$port1" '^[0-9]+$' "podman: v1 has a port ($port1)"
assert_eq "$APP site 1" "$(curl -s --max-time 5 "http://127.0.0.1:$port1/")" "podman: v1 served directly on its port"
assert_eq 1 "$(running_count $APP)" "podman: one running container labelled with the agent and the app"
assert_eq v1 "$(cinspect "$(app_containers $APP)" '{{index .Config.Labels "dev.deployctl.release"}}')" \
    "podman: the running container is v1's"
assert_ne "" "$(app_images $APP)" "podman: the image is labelled with the agent and the app"
assert_eq 0 "$(pids_in_dir_matching "$(release_dir $APP v1)" httpd | wc -l)" \
    "podman: no plain httpd process in v1's release dir (it runs in the container)"

# --- redeploy with a new site ----------------------------------------------------------------
commit_change "$REPO" "Site 2" site/index.html "$APP site 2"
run dctl deploy
deploy_ok v2 "podman: v2 deploys"
assert_contains "$OUT$ERR" "Using cache" "podman: the rebuild uses cached layers"
expect_serving $APP "$APP site 2" "podman: v2 serves the new site"
one_running() { [[ $(running_count $APP) == 1 ]]; }
if wait_until 5 one_running; then pass "podman: after v2's drain, exactly one running container"; else
    fail "podman: after v2's drain, exactly one running container" "containers: $(containers_summary $APP)"
fi
assert_eq v2 "$(cinspect "$(app_containers $APP)" '{{index .Config.Labels "dev.deployctl.release"}}')" \
    "podman: the running container is v2's"

# --- rollback --------------------------------------------------------------------------------
assert_exit 0 dctl rollback
expect_serving $APP "$APP site 1" "podman: after rollback, v1's site is served"
assert_eq "v2=INACTIVE v1=PRODUCTION" "$(dctl --json releases | jq -r '.[] | "\(.id)=\(.state)"' | paste -sd' ')" \
    "podman: after rollback, v1 PRODUCTION and v2 INACTIVE"
if wait_until 5 one_running; then pass "podman: after the rollback's drain, exactly one running container"; else
    fail "podman: after the rollback's drain, exactly one running container" "containers: $(containers_summary $APP)"
fi
assert_eq v1 "$(cinspect "$(app_containers $APP)" '{{index .Config.Labels "dev.deployctl.release"}}')" \
    "podman: after rollback, the running container is v1's"
