#!/usr/bin/env bash
# [processes] on the docker engine: each process other than web is a container of its own,
# from the release's image (web = "" keeps the image's CMD), named after the release and the
# process, with $PROCESS and $RELEASE; its output goes to vN.NAME.log; a deploy replaces the
# old worker container (SIGTERM first) once the new web is live; a worker killed under the
# engine is restarted; ps names its container; scale runs web and worker instances as
# containers of their own (each web published on its own port); a worker-only release's
# containers restart under the engine only once it is PRODUCTION; destroy removes them all.
source "$(dirname "$0")/lib.sh"
require_binaries
require_docker

AGENT_ENGINE=docker start_agent
APP=cprocs
WORKER='echo "worker $PROCESS of $RELEASE up"; trap "echo worker $RELEASE got TERM; exit 0" TERM; while :; do sleep 0.3; done'
processes_toml() { printf '[processes]\nweb = ""\nworker = %s\n' "$(toml_string "$WORKER")"; }
make_container_repo $APP extra="$(processes_toml)"
worker_name() { printf '%s-worker-1' "$(container_name $APP "$1")"; }
worker_running() { [[ $(cinspect "$(worker_name "$1")" '{{.State.Running}}') == true ]]; }
worker_log() { cat "$DATA/apps/$APP/logs/$1.worker.log" 2>/dev/null || true; }
ps_field() { dctl --json ps 2>/dev/null | jq -r "select(.event == \"processes\") | [.processes[] | select(.process == \"$1\")][0].$2 // empty" 2>/dev/null || true; }

assert_exit 0 dctl deploy
expect_serving $APP "$APP site 1" "v1: the web (the image's CMD) serves"
assert_true "v1: the worker container runs ($(containers_summary $APP))" wait_until 20 worker_running v1
assert_eq "worker=1" "$(cinspect "$(worker_name v1)" '{{index .Config.Labels "dev.deployctl.process"}}' | sed 's/^worker\.1$/worker=1/')" \
    "the worker container is labelled dev.deployctl.process=worker.1"
has_line() { grep -q "$2" <<<"$(worker_log "$1")"; }
assert_true "v1 worker's output (with \$PROCESS and \$RELEASE) is in v1.worker.log" wait_until 10 has_line v1 "worker worker.1 of v1 up"
assert_eq "$(worker_name v1)" "$(ps_field worker container)" "ps --json: the worker's container"
assert_eq running "$(ps_field worker state)" "ps --json: the worker runs"
assert_eq 2 "$(running_count $APP)" "two containers run: web and worker"

# --- a deploy replaces the worker: the old one gets SIGTERM ------------------------------------
commit_change "$REPO" "Version 2" site/index.html "$APP site 2"
assert_exit 0 dctl deploy
expect_serving $APP "$APP site 2" "v2 serves"
assert_true "v2: its worker container runs" wait_until 20 worker_running v2
gone_v1() { [[ -z $(cinspect "$(worker_name v1)" '{{.State.Status}}') ]]; }
assert_true "v1's worker container is removed" wait_until 20 gone_v1
assert_contains "$(worker_log v1)" "worker v1 got TERM" "v1's worker got SIGTERM before it was removed"

# --- a worker whose process dies is started again ---------------------------------------------
pid=$(cinspect "$(worker_name v2)" '{{.State.Pid}}')
kill -9 "$pid"
restarted() { [[ $(ps_field worker state) == running && $(ps_field worker pid) != "$pid" && -n $(ps_field worker pid) ]]; }
assert_true "a worker killed -9 runs again (restarted by the engine or the agent)" wait_until 30 restarted
assert_ne 0 "$(ps_field worker restarts)" "ps: the restart is counted"

# --- scale web=2 worker=2: containers of their own, each web on its own port, both routed ----
assert_exit 0 dctl scale web=2 worker=2
running_as() { [[ $(cinspect "$(container_name $APP v2)-$1" '{{.State.Running}}') == true ]]; }
assert_true "web.2 is a container of its own" running_as web-2
assert_true "worker.2 is a container of its own" running_as worker-2
upstreams() { jq -r ".routes[] | select(.app == \"$APP\") | .upstreams // [] | .[]" "$DATA/proxy/routes.json"; }
assert_eq 2 "$(upstreams | count_lines)" "routes.json: the app's two web instances are its upstreams"
for upstream in $(upstreams); do
    assert_eq "$APP site 2" "$(curl -s --max-time 5 "http://$upstream/")" "the web instance on $upstream serves v2"
done
assert_exit 0 dctl scale web=1 worker=1
gone() { [[ -z $(cinspect "$(container_name $APP v2)-$1" '{{.State.Status}}') ]]; }
assert_true "scale web=1: web.2's container is removed" wait_until 20 gone web-2
assert_true "scale worker=1: worker.2's container is removed" wait_until 20 gone worker-2
expect_serving $APP "$APP site 2" "one instance: v2 still serves"

# --- a worker-only release: the engine restarts its containers only once it is PRODUCTION ------
# While its processes are checked (they must stay up for health.grace) a worker that exits
# fails the release: docker must not restart it behind the check (--restart no until then).
ONLY=cworkers PROCS_REPO=$REPO
make_container_repo $ONLY extra="$(printf '[processes]\nworker = %s\n' "$(toml_string "$WORKER")")"
sed -i 's/^health = { path = "[^"]*", /health = { grace = "4s", /' "$REPO/deploy.toml"
git -C "$REPO" commit -qam "worker-only, grace 4s"
assert_exit 0 dctl deploy --no-follow
only_worker=$(container_name $ONLY v1)-worker-1
checked() { [[ $(release_state $ONLY v1) == PROVISIONING && $(cinspect "$only_worker" '{{.State.Running}}') == true ]]; }
assert_true "the worker-only v1 is PROVISIONING, its worker container running" wait_until 20 checked
assert_eq no "$(cinspect "$only_worker" '{{.HostConfig.RestartPolicy.Name}}')" "while it is checked: restart policy no"
live() { [[ $(release_state $ONLY v1) == PRODUCTION ]]; }
assert_true "the worker-only v1 becomes PRODUCTION" wait_until 30 live
policy_set() { [[ $(cinspect "$only_worker" '{{.HostConfig.RestartPolicy.Name}}') == unless-stopped ]]; }
assert_true "once PRODUCTION: restart policy unless-stopped" wait_until 10 policy_set
assert_exit 0 dctl destroy $ONLY --yes
REPO=$PROCS_REPO

# --- destroy removes every container ----------------------------------------------------------
assert_exit 0 dctl destroy $APP --yes
assert_eq 0 "$(app_containers $APP -a | count_lines)" "destroy: no container of the app is left ($(containers_summary $APP))"

pass "container processes: a container per process, rotated on deploy, restarted, removed"
