#!/usr/bin/env bash
# The Debian packages (packaging/deb.cmake, docs/packaging.md): cpack builds deployctl and
# deploy-agent from this build tree, lintian finds no error in them, and apt-get installs
# them into a clean Debian 12 that debootstrap makes here, pulling the libraries they link.
# There: both programs run, the postinst made the user and the groups and enabled the unit
# without starting it, systemd-analyze verifies the installed unit, the agent serves with the
# shipped agent.toml as its user and deploys an app; an upgrade (the same build, Debian
# revision 2) keeps the edited conffile, restarts only a running agent, and the app and the
# proxy serve through it with no failed request; removal stops the agent only, and purge
# keeps the data, the user and the group.
#
# Needs root (debootstrap, chroot) and deb.debian.org. The minimal base system is cached
# under BUILD_DIR/test-cache for the day: the test takes about 30 s with it, 1 to 3 minutes
# without (debootstrap alone 30 to 80 s, with the machine's load).
source "$(dirname "$0")/lib.sh"
require_binaries
BUILD_DIR=${BUILD_DIR:-$REPO_ROOT/build}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[[ -f $BUILD_DIR/CPackConfig.cmake ]] || fail "a configured build tree at $BUILD_DIR" "set BUILD_DIR"

require_tools "cmake dpkg-dev file lintian debootstrap" cpack dpkg-shlibdeps file lintian debootstrap
# Outside CI, not being root or the mirror out of reach skips; in CI (root, with the
# network to Debian's archive) it fails.
skip_or_fail() {
    [[ ${CI:-} == true ]] && fail "$1" "CI runs as root and reaches Debian's archive"
    log "SKIP: $1"
    exit 77
}
[[ $(id -u) == 0 ]] || skip_or_fail "needs root (debootstrap, chroot, mount)"
curl -fsS -o /dev/null --max-time 20 "$MIRROR/dists/bookworm/Release" ||
    skip_or_fail "cannot reach the Debian archive at $MIRROR (DEBIAN_MIRROR)"
require_static_busybox # the app deployed in the chroot runs busybox httpd

ROOT=$TEST_TMP/root
POLICY_LOG=/var/log/policy-rc.d.log # in the chroot
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# in_root CMD...: CMD in the chroot as root, with a clean environment.
in_root() {
    chroot "$ROOT" env -i PATH="$CHROOT_PATH" HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

root_pids() { chroot_pids "$ROOT"; }
pkg_cleanup() {
    touch "$TEST_TMP/traffic.stop" 2>/dev/null
    release_chroot "$ROOT"
}
at_exit pkg_cleanup

# ---------------------------------------------------------------- the packages

# build_debs DIR [cpack -D ...]: both packages from this build tree into DIR.
build_debs() {
    local dir=$1
    shift
    run cpack --config "$BUILD_DIR/CPackConfig.cmake" -B "$dir" "$@"
    [[ $RC == 0 ]] || fail "cpack builds the packages into $(short_cmd "$dir")" "$(excerpt "$OUT_FILE")" "$(excerpt "$ERR_FILE")"
    AGENT_DEB=$(compgen -G "$dir/deploy-agent_*_*.deb" || true)
    CLI_DEB=$(compgen -G "$dir/deployctl_*_*.deb" || true)
    [[ -f $AGENT_DEB && -f $CLI_DEB ]] || fail "cpack made deploy-agent_*.deb and deployctl_*.deb" "in $dir: $(ls "$dir")"
}
start=$SECONDS
build_debs "$TEST_TMP/debs1"
pass "cpack: $(basename "$AGENT_DEB") and $(basename "$CLI_DEB") ($((SECONDS - start)) s)"
VERSION=$(dpkg-deb -f "$AGENT_DEB" Version)
assert_eq "$(sed -n 's/^project(deployctl VERSION \([0-9.]*\).*/\1/p' "$REPO_ROOT/CMakeLists.txt")-1" "$VERSION" \
    "package version: the project's, Debian revision 1"
assert_eq "$VERSION" "$(dpkg-deb -f "$CLI_DEB" Version)" "both packages have that version"

agent_files=$(dpkg-deb -c "$AGENT_DEB" | awk '{ print $6 }')
cli_files=$(dpkg-deb -c "$CLI_DEB" | awk '{ print $6 }')
for f in ./usr/bin/deploy-agent ./usr/bin/deploy-proxy ./lib/systemd/system/deploy-agent.service \
    ./etc/deploy-agent/agent.toml ./usr/share/man/man8/deploy-agent.8.gz \
    ./usr/share/doc/deploy-agent/copyright ./usr/share/doc/deploy-agent/changelog.Debian.gz \
    ./usr/share/deploy-agent/fail2ban/filter.d/deploy-agent.conf; do
    assert_true "deploy-agent package holds $f" grep -qxF -- "$f" <<<"$agent_files"
done
for f in ./usr/bin/deployctl ./usr/share/man/man1/deployctl.1.gz \
    ./usr/share/bash-completion/completions/deployctl ./usr/share/zsh/vendor-completions/_deployctl \
    ./usr/share/fish/vendor_completions.d/deployctl.fish ./usr/share/doc/deployctl/copyright; do
    assert_true "deployctl package holds $f" grep -qxF -- "$f" <<<"$cli_files"
done
assert_not_contains "$agent_files" "./usr/bin/deployctl" "deployctl is not in the deploy-agent package"
assert_contains "$(dpkg-deb -f "$AGENT_DEB" Depends)" "libsqlite3-0" \
    "deploy-agent's Depends come from the libraries it links (dpkg-shlibdeps)"
assert_contains "$(dpkg-deb -f "$CLI_DEB" Depends)" "libcurl4" \
    "deployctl's Depends come from the libraries it links (dpkg-shlibdeps)"
mkdir -p "$TEST_TMP/x" && dpkg-deb -x "$AGENT_DEB" "$TEST_TMP/x"
assert_not_contains "$(file "$TEST_TMP/x/usr/bin/deploy-agent")" "not stripped" "deploy-agent is stripped"

# lintian: no error; the warnings kept are the ones docs/packaging.md explains.
run lintian --fail-on error "$AGENT_DEB" "$CLI_DEB"
sed 's/^/    lintian: /' "$OUT_FILE"
assert_eq "0" "$RC" "lintian: no error"
unexpected=$(grep -E '^[EW]: ' "$OUT_FILE" | grep -v ' initial-upload-closes-no-bugs ' || true)
assert_eq "" "$unexpected" "lintian: no warning but initial-upload-closes-no-bugs (docs/packaging.md)"

# ---------------------------------------------------------------- a clean Debian 12

debian_rootfs "$ROOT"
mount -t proc proc "$ROOT/proc" || fail "mount /proc in the chroot"
# No service starts in the chroot; the postinst and prerm's requests are logged. systemd
# counts as running (/run/systemd/system), so the scripts take the paths they take on a
# server: deb-systemd-invoke asks policy-rc.d, which refuses.
cat >"$ROOT/usr/sbin/policy-rc.d" <<EOF
#!/bin/sh
echo "\$*" >>$POLICY_LOG
exit 101
EOF
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mkdir -p "$ROOT/run/systemd/system"
assert_false "the base system has no deploy-agent user yet" in_root getent passwd deploy-agent

# ---------------------------------------------------------------- install

mkdir -p "$ROOT/tmp/debs1" && cp "$AGENT_DEB" "$CLI_DEB" "$ROOT/tmp/debs1/"
start=$SECONDS
assert_exit 0 in_root apt-get update -qq
assert_exit 0 in_root apt-get install -y -q "/tmp/debs1/$(basename "$AGENT_DEB")" "/tmp/debs1/$(basename "$CLI_DEB")"
pass "apt-get install of both packages and their dependencies ($((SECONDS - start)) s)"
assert_contains "$OUT" "deploy-agent: enabled, not started" "first install: the postinst says the agent is enabled, not started"
assert_eq "install ok installed $VERSION" "$(in_root dpkg-query -W -f '${Status} ${Version}' deploy-agent)" "deploy-agent installed"
assert_eq "install ok installed $VERSION" "$(in_root dpkg-query -W -f '${Status} ${Version}' deployctl)" "deployctl installed"

assert_exit 0 in_root deploy-agent version
assert_eq "deploy-agent ${VERSION%-*}" "$OUT" "deploy-agent version, installed"
assert_exit 0 in_root deployctl version
assert_contains "$OUT" "deployctl ${VERSION%-*}" "deployctl version, installed"
assert_exit 0 in_root man -w 8 deploy-proxy
assert_eq "/usr/share/man/man8/deploy-agent.8.gz" "$OUT" "man deploy-proxy finds deploy-agent(8), which describes it"

# The postinst's user and groups.
run in_root getent passwd deploy-agent
IFS=: read -r _ _ AGENT_UID AGENT_GID _ AGENT_HOME AGENT_SHELL <<<"$OUT"
assert_eq "0" "$RC" "postinst: system user deploy-agent exists"
assert_true "deploy-agent is a system user (uid $AGENT_UID < 1000)" test "$AGENT_UID" -lt 1000
assert_eq "$(in_root getent group deploy | cut -d: -f3)" "$AGENT_GID" "deploy-agent's group is deploy"
assert_eq "/var/lib/deploy-agent:/usr/sbin/nologin" "$AGENT_HOME:$AGENT_SHELL" "deploy-agent: home is the data dir, no login shell"
assert_exit 0 in_root getent group docker
pass "postinst: group docker exists, so the unit's SupplementaryGroups=docker can start"
assert_eq "700 deploy-agent:deploy" "$(in_root stat -c '%a %U:%G' /var/lib/deploy-agent)" "postinst: the data dir is the agent's alone"

# The unit: enabled, not started, and systemd accepts it.
UNIT=/lib/systemd/system/deploy-agent.service
assert_eq "$UNIT" "$(readlink "$ROOT/etc/systemd/system/multi-user.target.wants/deploy-agent.service")" \
    "postinst: deploy-agent.service enabled (multi-user.target.wants)"
assert_eq "" "$(grep deploy-agent "$ROOT$POLICY_LOG" 2>/dev/null || true)" \
    "postinst: no start asked of deploy-agent.service on the first install"
assert_eq "" "$(root_pids)" "nothing runs in the chroot after the install"
assert_match "$(grep '^ExecStart=' "$ROOT$UNIT")" '^ExecStart=/usr/bin/deploy-agent serve ' "unit: ExecStart is /usr/bin/deploy-agent"
run in_root systemd-analyze verify deploy-agent.service
assert_eq "0:" "$RC:$OUT$ERR" "systemd-analyze verify deploy-agent.service in the chroot: no complaints"

# The conffile.
assert_eq "/etc/deploy-agent/agent.toml" "$(in_root dpkg-query -W -f '${Conffiles}' deploy-agent | awk 'NF { print $1 }')" \
    "agent.toml is the package's conffile"
assert_true "the conffile is installed" test -s "$ROOT/etc/deploy-agent/agent.toml"

# ---------------------------------------------------------------- the agent runs

AGENT_PORT=$(free_port)
PROXY_PORT=$(free_port)
AGENT_URL=http://127.0.0.1:$AGENT_PORT
AGENT_LOG=$TEST_TMP/agent.log
IT_AGENT_LOGS+=("$AGENT_LOG")
# start_root_agent: deploy-agent serve in the chroot as its user, as the unit runs it, with
# the shipped /etc/deploy-agent/agent.toml (its defaults) but random ports. systemd makes
# /run/deploy-agent (RuntimeDirectory=); here the test does.
start_root_agent() {
    install -d -m 0750 -o "$AGENT_UID" -g "$AGENT_GID" "$ROOT/run/deploy-agent"
    chroot --userspec=deploy-agent:deploy "$ROOT" env -i PATH="$CHROOT_PATH" HOME=/var/lib/deploy-agent \
        /usr/bin/deploy-agent serve --listen "127.0.0.1:$AGENT_PORT" --proxy-listen "127.0.0.1:$PROXY_PORT" \
        </dev/null >>"$AGENT_LOG" 2>&1 &
    AGENT_PID=$!
    disown "$AGENT_PID"
    wait_until 15 curl -fs -o /dev/null --max-time 1 "$AGENT_URL/v1/health" ||
        fail "the installed agent answers /v1/health within 15 s" "agent log:" "$(excerpt "$AGENT_LOG")"
    pass "deploy-agent serve (installed, shipped agent.toml, user deploy-agent) answers on $AGENT_URL"
}
start_root_agent
assert_eq "$AGENT_UID" "$(ps -o uid= -p "$AGENT_PID" | tr -d ' ')" "the agent runs as deploy-agent (uid $AGENT_UID)"
assert_contains "$(cat "$AGENT_LOG")" "unix:/run/deploy-agent/agent.sock" "the agent serves its unix socket"
assert_contains "$(cat "$AGENT_LOG")" "data /var/lib/deploy-agent" "the agent's data dir is /var/lib/deploy-agent"
TOKEN=$(cat "$ROOT/var/lib/deploy-agent/admin.token")
# in_cli ARGS...: the installed deployctl in the chroot, against the agent.
in_cli() { chroot "$ROOT" env -i PATH="$CHROOT_PATH" HOME=/root DEPLOYCTL_TOKEN="$TOKEN" NO_COLOR=1 deployctl --host "$AGENT_URL" "$@"; }
assert_exit 0 in_cli agent version
assert_contains "$OUT" "deploy-agent ${VERSION%-*} at $AGENT_URL" "installed deployctl talks to the installed agent"
run curl -fsS --max-time 5 --unix-socket "$ROOT/run/deploy-agent/agent.sock" http://localhost/v1/health
assert_contains "$OUT" '"status":"ok"' "the agent answers on /run/deploy-agent/agent.sock"

# An app deployed with the installed deployctl, served by the installed proxy.
cp "$BUSYBOX_BIN" "$ROOT/usr/local/bin/busybox"
REPO=$ROOT/srv/hello
mkdir -p "$REPO"
git -C "$REPO" init -q -b main
git -C "$REPO" config user.name "Integration Test"
git -C "$REPO" config user.email "it@example.invalid"
write_toml "$REPO" hello hosts="\"$AGENT_URL\""
echo 1 >"$REPO/VERSION"
printf 'public/\n' >"$REPO/.gitignore"
git -C "$REPO" add -A && git -C "$REPO" commit -q -m "hello"
assert_exit 0 in_cli -C /srv/hello deploy
assert_eq "hello from 1" "$(fetch hello)" "the app serves through the installed deploy-proxy"
app_pid() {
    local pid
    for pid in $(root_pids); do
        [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"busybox httpd"* ]] && echo "$pid"
    done
    return 0
}
APP_PID=$(app_pid)
PROXY_PID=$(proxy_pid "$ROOT/var/lib/deploy-agent")
assert_ne "" "$APP_PID" "the app runs (pid $APP_PID)"
assert_ne "" "$PROXY_PID" "deploy-proxy runs (pid $PROXY_PID)"

# ---------------------------------------------------------------- upgrade

build_debs "$TEST_TMP/debs2" -D CPACK_DEBIAN_PACKAGE_RELEASE=2
VERSION2=$(dpkg-deb -f "$AGENT_DEB" Version)
assert_true "the second build is newer ($VERSION2 > $VERSION)" dpkg --compare-versions "$VERSION2" gt "$VERSION"
mkdir -p "$ROOT/tmp/debs2" && cp "$AGENT_DEB" "$CLI_DEB" "$ROOT/tmp/debs2/"
echo '# edited by the administrator' >>"$ROOT/etc/deploy-agent/agent.toml"
rm -f "$ROOT$POLICY_LOG"

# Requests through the proxy all along the upgrade and the agent's restart.
TRAFFIC=$TEST_TMP/traffic.codes
(
    end=$((SECONDS + 120))
    while [[ ! -e $TEST_TMP/traffic.stop ]] && ((SECONDS < end)); do
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 -H "Host: hello.localhost" \
            "http://127.0.0.1:$PROXY_PORT/" >>"$TRAFFIC" || true
        sleep 0.02
    done
) &
TRAFFIC_PID=$!
wait_until 10 test -s "$TRAFFIC" || fail "requests through the proxy start"

assert_exit 0 in_root apt-get install -y -q "/tmp/debs2/$(basename "$AGENT_DEB")" "/tmp/debs2/$(basename "$CLI_DEB")"
assert_not_contains "$OUT" "enabled, not started" "upgrade: no first-install message"
assert_eq "install ok installed $VERSION2" "$(in_root dpkg-query -W -f '${Status} ${Version}' deploy-agent)" "deploy-agent upgraded to $VERSION2"
assert_eq "install ok installed $VERSION2" "$(in_root dpkg-query -W -f '${Status} ${Version}' deployctl)" "deployctl upgraded to $VERSION2"
assert_eq "deploy-agent.service try-restart" "$(grep deploy-agent "$ROOT$POLICY_LOG" 2>/dev/null || true)" \
    "upgrade: the postinst asks for try-restart (restart only when running), nothing else"
assert_eq "# edited by the administrator" "$(tail -n 1 "$ROOT/etc/deploy-agent/agent.toml")" "upgrade keeps the edited conffile"
assert_eq "" "$(cd "$ROOT/etc/deploy-agent" && ls | grep -v '^agent.toml$' || true)" "upgrade: no agent.toml.dpkg-* beside it"
assert_eq "$AGENT_UID:$AGENT_GID" "$(in_root id -u deploy-agent):$(in_root id -g deploy-agent)" "upgrade keeps the user and group"
assert_true "upgrade keeps the unit enabled" test -L "$ROOT/etc/systemd/system/multi-user.target.wants/deploy-agent.service"

# What try-restart does under systemd (KillMode=process): SIGTERM to the agent alone, then
# the new binary starts. It finds deploy-proxy running a binary replaced on disk and hands
# the listening sockets to a new one; the app keeps running and is adopted.
kill -TERM "$AGENT_PID"
wait_until 30 dead "$AGENT_PID" || fail "the agent stops on SIGTERM"
start_root_agent
new_proxy() {
    local pid
    pid=$(proxy_pid "$ROOT/var/lib/deploy-agent")
    [[ -n $pid && $pid != "$PROXY_PID" ]] && alive "$pid" && [[ $(readlink "/proc/$pid/exe") != *deleted* ]]
}
wait_until 20 new_proxy || fail "the restarted agent replaces deploy-proxy with the upgraded binary" \
    "proxy pid: $(proxy_pid "$ROOT/var/lib/deploy-agent") (was $PROXY_PID)" "$(excerpt "$AGENT_LOG")"
pass "the restarted agent runs the upgraded deploy-proxy (pid $(proxy_pid "$ROOT/var/lib/deploy-agent"))"
wait_until 20 dead "$PROXY_PID" || fail "the old deploy-proxy exits after its requests"
pass "the old deploy-proxy (pid $PROXY_PID) finished and exited"
assert_eq "$APP_PID" "$(app_pid)" "the app process survived the upgrade (pid $APP_PID)"
assert_eq "hello from 1" "$(fetch hello)" "the app serves after the upgrade"
sleep 1
touch "$TEST_TMP/traffic.stop"
wait_until 10 dead "$TRAFFIC_PID" || fail "the request loop ends"
total=$(wc -l <"$TRAFFIC")
failed=$(grep -vcx 200 "$TRAFFIC" || true)
assert_true "requests during the upgrade: $total (more than 20)" test "$total" -gt 20
assert_eq "0" "$failed" "no request failed during the upgrade and the agent's restart ($total requests)"

# ---------------------------------------------------------------- remove, purge

# The administrator disables the unit: a reinstall or upgrade must not enable it again.
assert_exit 0 in_root systemctl --root=/ disable deploy-agent.service # offline: systemd does not run here
assert_false "systemctl disable removed the symlink" test -e "$ROOT/etc/systemd/system/multi-user.target.wants/deploy-agent.service"
assert_exit 0 in_root apt-get install -y -q --reinstall "/tmp/debs2/$(basename "$AGENT_DEB")"
assert_false "reinstall keeps a disabled unit disabled" test -e "$ROOT/etc/systemd/system/multi-user.target.wants/deploy-agent.service"

rm -f "$ROOT$POLICY_LOG"
kill -TERM "$AGENT_PID" # the stop that the prerm asks systemd for (refused here)
wait_until 30 dead "$AGENT_PID" || fail "the agent stops on SIGTERM"
assert_exit 0 in_root apt-get remove -y -q deploy-agent
assert_eq "deploy-agent.service stop" "$(grep deploy-agent "$ROOT$POLICY_LOG" 2>/dev/null || true)" \
    "remove: the prerm stops deploy-agent.service"
assert_false "remove: /usr/bin/deploy-agent is gone" test -e "$ROOT/usr/bin/deploy-agent"
assert_true "remove keeps the conffile" test -s "$ROOT/etc/deploy-agent/agent.toml"
assert_true "remove keeps the data" test -s "$ROOT/var/lib/deploy-agent/state.db"
assert_eq "hello from 1" "$(fetch hello)" "remove: the app and deploy-proxy keep serving (KillMode=process)"
assert_exit 0 in_root apt-get purge -y -q deploy-agent
assert_contains "$OUT" "kept /var/lib/deploy-agent" "purge says what it kept"
assert_false "purge removes the conffile" test -e "$ROOT/etc/deploy-agent/agent.toml"
assert_true "purge keeps the data dir (an app's data never vanishes with a package)" test -s "$ROOT/var/lib/deploy-agent/state.db"
assert_exit 0 in_root getent passwd deploy-agent
pass "purge keeps the user deploy-agent"
assert_exit 0 in_root deployctl version
pass "deployctl stays installed and runs"
log "took $SECONDS s"
