#!/usr/bin/env bash
# Container releases that fail (build error, build timeout, memory limit at
# startup, app exiting at startup) end FAILED with the reason, exit 1, and never
# disturb the container serving; a PRODUCTION container that crashes, or
# disappears, serves again and the event shows in `deployctl logs`. An agent
# without a container engine refuses build.dockerfile.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

AGENT_ENGINE=docker
start_agent
APP=cfail
make_container_repo $APP

assert_exit 0 dctl deploy
expect_serving $APP "$APP site 1" "v1 served"
name1=$(container_name $APP v1)
v1_cid=$(cinspect "$name1" '{{.Id}}')
assert_ne "" "$v1_cid" "v1's container $name1 exists ($(containers_summary $APP))"

newest() { dctl --json releases | jq -c '.[0]'; }

# still_fine DESCRIPTION: v1 remains PRODUCTION, serving, same container, running.
still_fine() {
    assert_eq v1 "$(dctl --json status | jq -r .production)" "$1: v1 still PRODUCTION"
    expect_serving $APP "$APP site 1" "$1: v1 still serving"
    assert_eq "$v1_cid true" "$(cinspect "$name1" '{{.Id}} {{.State.Running}}')" "$1: v1's container untouched and running"
    assert_eq 1 "$(running_count $APP)" "$1: exactly one running container for the app"
}

# no_container_of ID DESCRIPTION: nothing of the failed release is left running.
no_container_of() {
    local id=$1
    gone() { [[ -z $(release_containers $APP "$id") ]]; }
    if wait_until 5 gone; then pass "$2: no running container of $id"; else
        fail "$2: no running container of $id" "containers: $(containers_summary $APP)"
    fi
}

# --- build failure: RUN /bin/false -------------------------------------------------------
write_dockerfile "$REPO" steps='RUN ["/bin/false"]'
commit_change "$REPO" "Broken build" site/index.html "$APP site broken"
assert_exit 1 dctl deploy
r=$(newest)
id=$(jq -r .id <<<"$r")
assert_eq "v2 FAILED" "$(jq -r '"\(.id) \(.state)"' <<<"$r")" "build failure: v2 FAILED"
assert_contains "$(jq -r .error <<<"$r")" "build failed" "build failure: error says \"build failed\""
assert_match "$(jq -r .error <<<"$r")" 'status[^0-9]*1([^0-9]|$)' "build failure: error gives the engine's exit status"
assert_contains "$OUT$ERR" "/bin/false" "build failure: the build's output (the failing step) reached the user"
assert_false "build failure: no image $(image_ref $APP "$id")" image_exists "$(image_ref $APP "$id")"
no_container_of "$id" "build failure"
still_fine "after build failure"

run dctl --json deploy
assert_eq 1 "$RC" "build failure with --json: exit 1"
d=$(jq -c 'select(.event == "done")' "$OUT_FILE")
assert_eq FAILED "$(jq -r .state <<<"$d")" "--json done.state == FAILED"
assert_contains "$(jq -r .error <<<"$d")" "build failed" "--json done.error says \"build failed\""

# --- build timeout: a RUN that sleeps 30 s, build.timeout = 2s ---------------------------
# An odd duration, so the leftover checks cannot confuse it with anyone else's sleep.
write_dockerfile "$REPO" steps='RUN ["/bin/busybox","sleep","29.417"]'
write_container_toml "$REPO" $APP build_timeout=2s
commit_change "$REPO" "Slow build"
start=$(date +%s)
assert_exit 1 dctl deploy
took=$(($(date +%s) - start))
assert_true "build timeout: deploy returns well before the sleep would end (${took}s < 15s)" test "$took" -lt 15
r=$(newest)
id=$(jq -r .id <<<"$r")
assert_eq FAILED "$(jq -r .state <<<"$r")" "build timeout: $id FAILED"
assert_contains "$(jq -r .error <<<"$r")" "build timed out after 2s" "build timeout: error says \"build timed out after 2s\""
no_sleep() { ! pgrep -f 'sleep 29[.]417' >/dev/null; }
if wait_until 10 no_sleep; then pass "build timeout: the build step's sleep is gone"; else
    fail "build timeout: the build step's sleep is gone" "still running: $(pgrep -af 'sleep 29[.]417')"
fi
no_build_container() { ! ecli ps --no-trunc --format '{{.Command}}' | grep 'sleep 29[.]417' >/dev/null; }
if wait_until 10 no_build_container; then pass "build timeout: no build container left running"; else
    fail "build timeout: no build container left running" "$(ecli ps --no-trunc --format '{{.ID}} {{.Command}}' | grep 'sleep 29')"
fi
no_build_cli() { [[ -z $(pgrep -f -- "$(release_dir $APP "$id")") ]]; }
if wait_until 5 no_build_cli; then pass "build timeout: the engine CLI building $id was stopped"; else
    fail "build timeout: the engine CLI building $id was stopped" "$(pgrep -af -- "$(release_dir $APP "$id")")"
fi
assert_false "build timeout: no image $(image_ref $APP "$id")" image_exists "$(image_ref $APP "$id")"
still_fine "after build timeout"

# --- memory limit: the app allocates 200M under run.memory = 64m before serving ------------
write_dockerfile "$REPO" cmd='dd if=/dev/zero of=/dev/null bs=200M count=1 && exec httpd -f -p 127.0.0.1:$PORT -h /site'
write_container_toml "$REPO" $APP run_memory=64m health_timeout=15s
commit_change "$REPO" "Memory hog"
start=$(date +%s)
assert_exit 1 dctl deploy
took=$(($(date +%s) - start))
r=$(newest)
id=$(jq -r .id <<<"$r")
assert_eq FAILED "$(jq -r .state <<<"$r")" "memory limit: $id FAILED"
assert_contains "$(jq -r .error <<<"$r")" "exceeded memory limit 64m" "memory limit: error says \"exceeded memory limit 64m\""
assert_true "memory limit: noticed before the 15 s startup timeout (${took}s)" test "$took" -lt 14
no_container_of "$id" "memory limit"
still_fine "after memory limit"

# --- the app exits with status 3 while starting -------------------------------------------
write_dockerfile "$REPO" cmd='echo it-exiting-now; exit 3'
write_container_toml "$REPO" $APP health_timeout=15s
commit_change "$REPO" "App exits"
start=$(date +%s)
assert_exit 1 dctl deploy
took=$(($(date +%s) - start))
r=$(newest)
id=$(jq -r .id <<<"$r")
assert_eq FAILED "$(jq -r .state <<<"$r")" "app exits: $id FAILED"
assert_contains "$(jq -r .error <<<"$r")" "exited with status 3" "app exits: error says \"exited with status 3\""
assert_true "app exits: noticed before the 15 s startup timeout (${took}s)" test "$took" -lt 14
# (grep reads everything: grep -q could exit at the match and, under pipefail, the
# producer's SIGPIPE would turn the match into a miss.)
logs_have() { dctl logs "${@:2}" 2>/dev/null | grep -F -- "$1" >/dev/null; }
if wait_until 5 logs_have it-exiting-now "$id"; then pass "app exits: its output is in \`deployctl logs $id\`"; else
    fail "app exits: its output is in \`deployctl logs $id\`" "$(dctl logs "$id" 2>&1 | tail -n 20)"
fi
no_container_of "$id" "app exits"
still_fine "after app exit"

assert_eq 1 "$(sqlite3 "$DATA/state.db" "select count(*) from releases where app='$APP' and state='PRODUCTION'")" \
    "state.db: exactly one PRODUCTION"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "select count(*) from releases where app='$APP' and state in ('QUEUED','BUILDING','PROVISIONING')")" \
    "state.db: nothing left unsettled"

# --- a good release; its container crashes: the engine restarts it ------------------------
write_dockerfile "$REPO"
write_container_toml "$REPO" $APP
commit_change "$REPO" "Fixed" site/index.html "$APP site 2"
assert_exit 0 dctl deploy
expect_serving $APP "$APP site 2" "a good deploy after the failures serves site 2"
good=$(dctl --json status | jq -r .production)
assert_ne v1 "$good" "the good release ($good) is PRODUCTION"
gname=$(container_name $APP "$good")
gcid=$(cinspect "$gname" '{{.Id}}')
assert_ne "" "$gcid" "$good's container $gname exists"
gpid=$(cinspect "$gname" '{{.State.Pid}}')
assert_match "$gpid" '^[1-9][0-9]*$' "$good's container has a main process on the host ($gpid)"
assert_eq unless-stopped "$(cinspect "$gname" '{{.HostConfig.RestartPolicy.Name}}')" \
    "$good's container has restart policy unless-stopped once healthy"
kill -9 "$gpid"
pass "killed $good's container main process (pid $gpid) with SIGKILL"
serving_again() { [[ $(fetch $APP /) == "$APP site 2" ]]; }
if wait_until 10 serving_again; then pass "after the crash: serving again within 10 s"; else
    fail "after the crash: serving again within 10 s" "answer: $(fetch_code $APP /)" "containers: $(containers_summary $APP)"
fi
if wait_until 10 logs_have restarted; then pass "after the crash: \`deployctl logs\` says the container was restarted"; else
    fail "after the crash: \`deployctl logs\` says the container was restarted" "$(dctl logs 2>&1 | tail -n 20)"
fi
assert_eq "$gcid" "$(cinspect "$gname" '{{.Id}}')" "after the crash: the same container, restarted by the engine"
assert_ne "$gpid" "$(cinspect "$gname" '{{.State.Pid}}')" "after the crash: a new main process"
assert_match "$(cinspect "$gname" '{{.RestartCount}}')" '^[1-9]' "after the crash: the engine's restart count >= 1"
assert_eq PRODUCTION "$(release_state $APP "$good")" "after the crash: $good still PRODUCTION"
assert_eq 1 "$(running_count $APP)" "after the crash: exactly one running container"

# --- the container is removed behind the agent's back: the agent runs it again -----------
ecli rm -f "$gname" >/dev/null
pass "removed $good's container with \`docker rm -f\`"
if wait_until 15 serving_again; then pass "after the removal: serving again within 15 s"; else
    fail "after the removal: serving again within 15 s" "answer: $(fetch_code $APP /)" "containers: $(containers_summary $APP)"
fi
# Depending on when the agent looks, the container is already gone ("container was
# gone") or still being removed ("container exited with status 137"); either way the
# agent started it again and says so.
if wait_until 10 logs_have "; started again"; then pass "after the removal: \`deployctl logs\` says the agent started it again"; else
    fail "after the removal: \`deployctl logs\` says the agent started it again" "$(dctl logs 2>&1 | tail -n 20)"
fi
assert_eq true "$(cinspect "$gname" '{{.State.Running}}')" "after the removal: $gname runs again"
assert_eq 1 "$(running_count $APP)" "after the removal: exactly one running container"
assert_eq PRODUCTION "$(release_state $APP "$good")" "after the removal: $good still PRODUCTION"

# --- an agent without a container engine refuses build.dockerfile --------------------------
# first_deploy_fails WHAT ERROR_REGEX: the first deploy exits 1, v1 FAILED with that error.
first_deploy_fails() {
    assert_exit 1 dctl deploy
    local r
    r=$(newest)
    assert_eq "v1 FAILED" "$(jq -r '"\(.id) \(.state)"' <<<"$r")" "$1: v1 FAILED"
    assert_match "$(jq -r .error <<<"$r")" "$2" "$1: the error says why"
}
AGENT_ENGINE=process start_agent noengine
make_container_repo cnoengine
first_deploy_fails "--engine process + build.dockerfile" "build\.dockerfile is set but this agent has no container engine"

# --- the engine's disk: an image build is refused when the engine's storage is short ------
# A docker CLI that says its storage is a 16 MiB tmpfs nearly full (the real one otherwise).
ENGINE_DISK=$TEST_TMP/engine-disk
mkdir -p "$ENGINE_DISK"
if ! mount -t tmpfs -o size=16m tmpfs "$ENGINE_DISK" 2>/dev/null; then
    [[ ${CI:-} == true ]] && fail "a 16 MiB tmpfs is mounted as the engine's disk" "mount -t tmpfs failed (CI runs as root)"
    log "SKIP: the engine-disk case needs to mount a tmpfs (root); the checks above passed"
    exit 77
fi
head -c $((15 * 1024 * 1024)) /dev/zero >"$ENGINE_DISK/filler"
cat >"$TEST_TMP/docker-small-disk" <<SCRIPT
#!/bin/sh
if [ "\$1" = info ] && [ "\$3" = '{{.DockerRootDir}}' ]; then echo "$ENGINE_DISK"; exit 0; fi
exec "$(command -v "$ENGINE_CLI")" "\$@"
SCRIPT
chmod 755 "$TEST_TMP/docker-small-disk"
AGENT_EXTRA_ARGS=(--engine-bin "$TEST_TMP/docker-small-disk" --min-free 4m)
AGENT_ENGINE=docker start_agent enginedisk
make_container_repo cdisk
first_deploy_fails "the engine's disk short" "the agent's disk is full: .* free in $ENGINE_DISK, an image build needs"
assert_eq "" "$(app_images cdisk)" "... and no image was built"
rm -f "$ENGINE_DISK/filler"
assert_exit 0 dctl deploy
expect_serving cdisk "cdisk site 1" "once the engine's disk has room, the deploy works"
