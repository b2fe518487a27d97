#!/usr/bin/env bash
# stop, start and destroy of a container app on the docker engine: stop
# removes the container (the proxy answers 503) and keeps it stopped across an
# agent restart, start runs it again from its image, destroy removes the
# containers and the images of every release; deploy-agent down removes the
# containers labelled with the agent's id.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

AGENT_ENGINE=docker start_agent
APP=clife
make_container_repo $APP
assert_exit 0 dctl deploy
expect_serving $APP "$APP site 1" "v1 served from its container"
name1=$(container_name $APP v1)
assert_eq "true" "$(cinspect "$name1" '{{.State.Running}}')" "container $name1 runs"

assert_exit 0 dctl stop
assert_contains "$OUT" "Stopped $APP v1" "stop says so"
assert_eq "" "$(cinspect "$name1" '{{.State.Running}}')" "stop removes the container"
assert_eq 503 "$(fetch_code $APP)" "a stopped container app answers 503"
assert_true "its image stays for start" image_exists "$(image_ref $APP v1)"

AGENT_ENGINE=docker kill_agent -9
AGENT_ENGINE=docker restart_agent
sleep 2
assert_eq "" "$(cinspect "$name1" '{{.State.Running}}')" "no container after an agent restart: still stopped"
assert_eq 503 "$(fetch_code $APP)" "still 503 after the agent restart"

assert_exit 0 dctl start
assert_contains "$OUT" "Started $APP v1" "start says so"
assert_eq "true" "$(cinspect "$name1" '{{.State.Running}}')" "start runs the container again"
expect_serving $APP "$APP site 1" "served again after start"

assert_exit 0 dctl restart
assert_eq "true" "$(cinspect "$name1" '{{.State.Running}}')" "restart: the container runs"
expect_serving $APP "$APP site 1" "served after restart"

commit_change "$REPO" "v2" VERSION 2
assert_exit 0 dctl deploy
images_before=$(app_images $APP | count_lines)
assert_ne 0 "$images_before" "the app has images ($images_before)"
assert_exit 0 dctl destroy $APP --yes
assert_contains "$OUT" "Destroyed $APP" "destroy says so"
assert_eq 0 "$(app_containers $APP -a | count_lines)" "destroy removes every container of the app"
assert_eq 0 "$(app_images $APP | count_lines)" "destroy removes every image of the app"
assert_false "apps/$APP is gone" test -e "$DATA/apps/$APP"
assert_eq 404 "$(fetch_code $APP)" "the host answers the proxy's unknown-app 404"

# deploy-agent down removes the agent's containers.
assert_exit 0 dctl deploy
assert_eq 1 "$(app_containers $APP | count_lines)" "deployed again: one container"
proxy=$(proxy_pid)
assert_exit 0 "$AGENT_BIN" down --data-dir "$DATA"
assert_contains "$OUT" "docker container" "down names the container it removed"
assert_eq 0 "$(app_containers $APP -a | count_lines)" "down removes the agent's containers"
assert_true "down stops the proxy" wait_until 10 dead "$proxy"
assert_true "down stops the agent" wait_until 10 dead "$AGENT_PID"
log "all $CHECKS checks passed"
