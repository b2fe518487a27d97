#!/usr/bin/env bash
# A container app on the docker engine: the agent builds the image (output
# streamed, layers cached), runs it with host networking, serves it through
# the proxy, rolls back to the previous image, shows the runtime output in
# `deployctl logs`, and prunes releases past deploy.keep with their images.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

AGENT_ENGINE=docker start_agent
# The CLI's daemon listens on its default unix socket here: the agent reads the states of
# its containers there (GET /containers/NAME/json), not through a `docker inspect` each.
if [[ -z ${DOCKER_HOST:-} && -z ${DOCKER_CONTEXT:-} ]]; then
    assert_true "the agent reads container states through the daemon's socket" \
        grep -q "container states are read through /var/run/docker.sock" "$AGENT_LOG"
else
    log "DOCKER_HOST or DOCKER_CONTEXT is set: the check that states are read through the default socket is skipped"
fi
APP=cdeploy
# A build step that prints, waits, prints: its lines must reach deployctl as they happen.
make_container_repo $APP steps='RUN ["/bin/sh","-c","echo it-stream-early; sleep 2; echo it-stream-late"]'
AG8=$(agent8)
assert_match "$AG8" '^[0-9a-f]{8}$' "DATA/agent.id exists and starts with 8 hex digits ($AG8)"

# --- the agent says which engine it runs ------------------------------------------
assert_exit 0 "$DEPLOYCTL_BIN" --host "$AGENT_URL" --no-color agent ping
assert_contains "$OUT" "ok" "agent ping prints ok"
dead_url=http://127.0.0.1:$(free_port)
assert_exit 3 "$DEPLOYCTL_BIN" --host "$dead_url" --no-color agent ping
assert_exit 0 dctl agent info
assert_match "$OUT" 'engine[^[:alnum:]]*docker' "agent info: engine docker"
assert_contains "$OUT" "$DOCKER_SERVER_VERSION" "agent info: shows the engine version ($DOCKER_SERVER_VERSION)"
assert_exit 0 dctl --json agent info
assert_jq "$OUT" '.engine == "docker"' "agent info --json: engine == \"docker\""
assert_jq "$OUT" '(.engine_version | type) == "string" and (.engine_version | length) > 0' \
    "agent info --json: engine_version is a non-empty string"
assert_contains "$(jq -r .engine_version <<<"$OUT")" "$DOCKER_SERVER_VERSION" \
    "agent info --json: engine_version is the engine's server version"
api GET /v1/info
assert_eq 200 "$API_STATUS" "GET /v1/info answers 200"
assert_jq "$API_BODY" '.engine == "docker"' "GET /v1/info: engine == \"docker\""

# --- first deploy: build output streamed, container running ---------------------------
assert_exit 0 dctl --json deploy
J1=$TEST_TMP/deploy1.ndjson
cp "$OUT_FILE" "$J1"
build1=$(jq -r 'select(.event == "log" and .stream == "build") | .line' "$J1")
assert_contains "$build1" "it-build-output-42" "deploy --json: the Dockerfile's RUN output arrives as a build log line"
ts_of() { jq -r --arg l "$1" 'select(.event == "log" and .line == $l) | .ts' "$J1" | head -n1; }
early=$(ts_of it-stream-early) late=$(ts_of it-stream-late)
assert_match "$early $late" '^[0-9T:.-]+Z [0-9T:.-]+Z$' "both lines of the slow build step arrive as events"
gap_ms=$(( $(date -d "$late" +%s%3N) - $(date -d "$early" +%s%3N) ))
if (( gap_ms >= 1500 )); then pass "build output streams: the two lines arrived ${gap_ms} ms apart (the step sleeps 2 s)"; else
    fail "build output streams line by line" "the lines arrived ${gap_ms} ms apart; expected about 2000"
fi
assert_not_contains "$build1" "Using cache" \
    "test setup: the first build of this run has nothing cached (unique LABEL first)"
assert_eq "QUEUED BUILDING PROVISIONING PRODUCTION" \
    "$(jq -r 'select(.event == "state") | .state' "$J1" | uniq | paste -sd' ')" "v1: state events in order"
assert_eq "v1 PRODUCTION" "$(jq -r 'select(.event == "done") | "\(.release) \(.state)"' "$J1")" "v1 reaches PRODUCTION"

expect_serving $APP "$APP site 1" "v1 served through the proxy (Host: $APP.localhost)"
port1=$(release_field $APP v1 port)
assert_match "$port1" '^[0-9]+$' "v1 has a port ($port1)"
assert_eq "$APP site 1" "$(curl -s --max-time 5 "http://127.0.0.1:$port1/")" "v1 served directly on its port"

name1=$(container_name $APP v1)
assert_eq "true" "$(cinspect "$name1" '{{.State.Running}}')" "container $name1 is running ($(containers_summary $APP))"
assert_eq "$(agent_id) $APP v1" \
    "$(cinspect "$name1" '{{index .Config.Labels "dev.deployctl.agent"}} {{index .Config.Labels "dev.deployctl.app"}} {{index .Config.Labels "dev.deployctl.release"}}')" \
    "container labels: agent, app, release"
assert_eq "host true" "$(cinspect "$name1" '{{.HostConfig.NetworkMode}} {{.HostConfig.Init}}')" \
    "container runs with --network host and --init"
assert_contains "$(cinspect "$name1" '{{range .Config.Env}}{{println .}}{{end}}')" "PORT=$port1" \
    "container environment has PORT=$port1"
assert_eq "$(image_ref $APP v1)" "$(cinspect "$name1" '{{.Config.Image}}')" "container runs image $(image_ref $APP v1)"
# Images carry agent and app only (the tag names the release), so that an
# unchanged tree builds entirely from cache.
assert_eq "$(agent_id) $APP " \
    "$(ecli image inspect -f '{{index .Config.Labels "dev.deployctl.agent"}} {{index .Config.Labels "dev.deployctl.app"}} {{index .Config.Labels "dev.deployctl.release"}}' "$(image_ref $APP v1)" 2>&1)" \
    "image labels: agent and app, no release"
assert_eq 1 "$(running_count $APP)" "exactly one running container for the app"
assert_eq 0 "$(pids_in_dir_matching "$(release_dir $APP v1)" httpd | wc -l)" \
    "no plain httpd process in v1's release dir (it runs in the container)"

# --- runtime output reaches `deployctl logs` ----------------------------------------------
# (grep reads everything: grep -q could exit at the match and, under pipefail, the
# producer's SIGPIPE would turn the match into a miss.)
logs_have() { dctl logs "${@:2}" 2>/dev/null | grep -F -- "$1" >/dev/null; }
if wait_until 5 logs_have "it-app-start port $port1"; then pass "logs: the container's startup line (stdout)"; else
    fail "logs: the container's startup line (stdout)" "deployctl logs:" "$(dctl logs 2>&1 | tail -n 20)" \
        "app log: $(excerpt "$DATA/apps/$APP/logs/v1.app.log" 10)"
fi
assert_exit 0 dctl logs
assert_contains "$OUT" "it-build-output-42" "logs: v1's build output is kept"
marker=it-marker-$RANDOM$RANDOM
assert_eq 404 "$(fetch_code $APP "/$marker")" "a request for /$marker reaches the container (404)"
if wait_until 5 logs_have "url:/$marker"; then pass "logs: httpd's request line (stderr) for /$marker shows within 5 s"; else
    fail "logs: httpd's request line (stderr) for /$marker shows within 5 s" "deployctl logs:" \
        "$(dctl logs 2>&1 | tail -n 20)" "docker logs: $(ecli logs --tail 5 "$name1" 2>&1 | paste -sd'|')"
fi
assert_exit 0 dctl --json logs
assert_eq app "$(jq -r --arg l "it-app-start port $port1" 'select(.line == $l) | .stream' "$OUT_FILE" | head -n1)" \
    "logs --json: the container's line has stream app"
# The engine's own time of the line (docker logs --timestamps), to the microsecond, in UTC.
line_ts=$(jq -r --arg l "it-app-start port $port1" 'select(.line == $l) | .ts' "$OUT_FILE" | head -n1)
assert_match "$line_ts" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z$' "logs --json: the container's line has its time (ts)"
started=$(date -u -d "$(cinspect "$name1" '{{.State.StartedAt}}')" +%s)
ts_s=$(date -u -d "$line_ts" +%s)
((ts_s >= started - 1 && ts_s <= $(date +%s))) && pass "... the time the container wrote it" ||
    fail "... the time the container wrote it" "container started $started, line at $ts_s"

# --- redeploy with only site/ changed: cached layers, new content -------------------------
commit_change "$REPO" "Site 2" site/index.html "$APP site 2"
assert_exit 0 dctl --json deploy
J2=$TEST_TMP/deploy2.ndjson
cp "$OUT_FILE" "$J2"
build2=$(jq -r 'select(.event == "log" and .stream == "build") | .line' "$J2")
assert_contains "$build2" "Using cache" "redeploy (site/ changed): the build output says \"Using cache\""
assert_eq "v2 PRODUCTION" "$(jq -r 'select(.event == "done") | "\(.release) \(.state)"' "$J2")" "v2 reaches PRODUCTION"
expect_serving $APP "$APP site 2" "v2 serves the new site through the proxy"
port2=$(release_field $APP v2 port)
assert_match "$port2" '^[0-9]+$' "v2 has a port ($port2)"
assert_eq "$APP site 2" "$(curl -s --max-time 5 "http://127.0.0.1:$port2/")" "v2 served directly on its port"
assert_true "image $(image_ref $APP v2) exists" image_exists "$(image_ref $APP v2)"

one_running() { [[ $(running_count $APP) == 1 ]]; }
if wait_until 5 one_running; then pass "after v2's drain: exactly one running container for the app"; else
    fail "after v2's drain: exactly one running container for the app" "containers: $(containers_summary $APP)"
fi
assert_eq v2 "$(cinspect "$(app_containers $APP)" '{{index .Config.Labels "dev.deployctl.release"}}')" \
    "the running container is v2's"
assert_eq "" "$(release_containers $APP v1)" "v1's container is no longer running"
assert_eq "v2=PRODUCTION v1=INACTIVE" "$(dctl --json releases | jq -r '.[] | "\(.id)=\(.state)"' | paste -sd' ')" \
    "releases: v2 PRODUCTION, v1 INACTIVE"

# --- rollback to the previous container release -------------------------------------------
assert_exit 0 dctl --json rollback
assert_eq "v1 PRODUCTION v2" "$(jq -r 'select(.event == "done") | "\(.release) \(.state) \(.previous)"' "$OUT_FILE")" \
    "rollback --json: v1 PRODUCTION, previous v2"
expect_serving $APP "$APP site 1" "after rollback: v1's site served through the proxy"
port1b=$(release_field $APP v1 port)
assert_match "$port1b" '^[0-9]+$' "after rollback: v1 has a port ($port1b)"
assert_eq "$APP site 1" "$(curl -s --max-time 5 "http://127.0.0.1:$port1b/")" "after rollback: v1 served directly on its port"
if wait_until 5 one_running; then pass "after rollback's drain: exactly one running container"; else
    fail "after rollback's drain: exactly one running container" "containers: $(containers_summary $APP)"
fi
assert_eq v1 "$(cinspect "$(app_containers $APP)" '{{index .Config.Labels "dev.deployctl.release"}}')" \
    "after rollback: the running container is v1's"
assert_eq v1 "$(dctl --json status | jq -r .production)" "status: production == v1"

# --- keep = 2: three more deploys (5 in all); pruned releases lose dir, container and image
write_container_toml "$REPO" $APP keep=2
for n in 3 4 5; do
    commit_change "$REPO" "Site $n" site/index.html "$APP site $n"
    assert_exit 0 dctl deploy
    if [[ $n == 3 ]]; then
        assert_contains "$OUT$ERR" "Using cache" "human deploy output shows the build's lines (\"Using cache\")"
    fi
    expect_serving $APP "$APP site $n" "v$n serves site $n"
done
assert_eq v5 "$(dctl --json status | jq -r .production)" "status: production == v5"

pruned() { [[ ! -e $(release_dir $APP v1) && ! -e $(release_dir $APP v2) ]]; }
if wait_until 10 pruned; then pass "keep = 2: the release dirs of v1 and v2 are gone"; else
    fail "keep = 2: the release dirs of v1 and v2 are gone" "$(ls "$DATA/apps/$APP/releases" 2>&1 | paste -sd' ')"
fi
listed=$(dctl --json releases | jq -r '.[].id' | paste -sd' ')
assert_eq "v5 v4 v3" "$listed" "keep = 2: releases lists v5 (PRODUCTION) and the two kept ones"
for id in v1 v2; do
    assert_false "pruned $id: image $(image_ref $APP $id) removed" image_exists "$(image_ref $APP $id)"
    assert_eq "" "$(release_containers $APP $id -a)" "pruned $id: no container left (running or stopped)"
done
images_ok() { (($(app_images $APP | count_lines) <= 3)); }
if wait_until 5 images_ok; then pass "keep = 2: at most keep + 1 = 3 images labelled with the app ($(app_images $APP | paste -sd' '))"; else
    fail "keep = 2: at most keep + 1 = 3 images labelled with the app" "images: $(app_images $APP | paste -sd' ')"
fi
for id in v3 v4 v5; do
    assert_true "kept $id: image $(image_ref $APP $id) still there" image_exists "$(image_ref $APP $id)"
    assert_true "kept $id: release dir still there" test -d "$(release_dir $APP $id)"
done

# A kept INACTIVE release still rolls back (its image was not pruned by mistake).
assert_exit 0 dctl rollback v4
expect_serving $APP "$APP site 4" "rollback to the kept v4 serves site 4"
if wait_until 5 one_running; then pass "after rollback to v4: exactly one running container"; else
    fail "after rollback to v4: exactly one running container" "containers: $(containers_summary $APP)"
fi

# --- agent df and agent prune: the agent's images no release has go; no other program's ---
orphan=$TEST_TMP/orphan
mkdir -p "$orphan"
cp "$BUSYBOX_BIN" "$orphan/busybox"
printf 'FROM scratch\nLABEL it.deployctl.run="%s" it.orphan="1"\nCOPY busybox /bin/busybox\n' "$IT_RUN_ID" >"$orphan/Dockerfile"
# As if a release's image outlived it (removed while the engine refused, the agent down).
ecli build -q --label "dev.deployctl.agent=$(agent_id)" --label "dev.deployctl.app=$APP" \
    -t "$(image_ref $APP v99)" "$orphan" >/dev/null
# Another program's image with the app's name on it, but not this agent's label.
ecli build -q --label "dev.deployctl.app=$APP" -t "not-ours/$APP:keep" "$orphan" >/dev/null
assert_exit 0 dctl agent df
assert_match "$OUT" "^images +[0-9.]+ [KMG]?i?B in the container engine \([0-9.]+ [KMG]?i?B used by no release" "agent df: the agent's images, and those no release has"
assert_match "$OUT" "APP +RELEASES +BLOBS +LOGS +BUILD CACHE +IMAGES" "agent df: an IMAGES column"
assert_exit 0 dctl --json agent prune --dry-run
assert_eq "v99" "$(jq -r '.images[].release' "$OUT_FILE" | paste -sd' ')" "agent prune --dry-run: the image of v99, which no release has, and only it"
assert_true "... and removes nothing" image_exists "$(image_ref $APP v99)"
assert_exit 0 dctl agent prune
assert_match "$OUT" "removed 1 unused image, " "agent prune: says it removed it"
assert_false "agent prune: the image of v99 is gone" image_exists "$(image_ref $APP v99)"
assert_true "agent prune: another program's image stays" image_exists "not-ours/$APP:keep"
for id in v4 v5; do
    assert_true "agent prune: kept $id's image stays" image_exists "$(image_ref $APP $id)"
done

# --- --engine auto picks docker; a root Dockerfile without build.dockerfile is a container app
AGENT_ENGINE=auto start_agent auto
assert_exit 0 "$DEPLOYCTL_BIN" --host "$AGENT_URL" --no-color --json agent info
assert_jq "$OUT" '.engine == "docker"' "--engine auto with a Docker engine answering: engine == \"docker\""
make_container_repo cauto dockerfile=
assert_false "test setup: cauto's deploy.toml has no build.dockerfile" grep -q dockerfile "$REPO/deploy.toml"
assert_exit 0 dctl deploy
expect_serving cauto "cauto site 1" "cauto (root Dockerfile, no build.dockerfile) served"
assert_eq 1 "$(running_count cauto)" "cauto runs in a container labelled with the auto agent's id"
