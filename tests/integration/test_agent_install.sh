#!/usr/bin/env bash
# deployctl agent install | upgrade over SSH into a clean Debian 12: a real sshd on 127.0.0.1
# whose logins are chrooted (ChrootDirectory) into a debootstrap'd Debian made by the test.
# --dry-run changes nothing; install copies the package built by cpack from this tree, apt
# installs it with its dependencies from deb.debian.org, starts the agent (no systemd in a
# chroot: start-stop-daemon, as the installer does on such servers) and waits until it
# answers; examples/hello is deployed through it; a second run changes nothing; a user who
# is not root upgrades it through sudo with a password, and the app keeps serving.
#
# Needs root (debootstrap, chroot, mount, a test user), deb.debian.org and cpack.
source "$(dirname "$0")/lib.sh"
require_binaries
BUILD_DIR=${BUILD_DIR:-$REPO_ROOT/build}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}

skip_or_fail() {
    [[ ${CI:-} == true ]] && fail "$1" "CI has everything this test needs (scripts/deps)"
    log "SKIP: $1"
    exit 77
}
[[ $(id -u) == 0 ]] || skip_or_fail "needs root (debootstrap, chroot, mount, useradd)"
require_tools "openssh-server openssh-client debootstrap cmake dpkg-dev" \
    "$SSHD_BIN" ssh-keygen debootstrap cpack dpkg-deb useradd flock
[[ -f $BUILD_DIR/CPackConfig.cmake ]] || fail "a configured build tree at $BUILD_DIR" "set BUILD_DIR"
curl -fsS -o /dev/null --max-time 20 "$MIRROR/dists/bookworm/Release" ||
    skip_or_fail "cannot reach the Debian archive at $MIRROR (DEBIAN_MIRROR)"
require_static_busybox # examples/hello runs busybox httpd

# sshd refuses a ChrootDirectory under a folder others may write (/tmp): the server's root
# lives under /var/lib.
ROOT=$(mktemp -d /var/lib/deployctl-it-server.XXXXXX)
chmod 755 "$ROOT"
SUDOER=dctl-it-$((RANDOM % 9000 + 1000))
SSHD_DIR=$TEST_TMP/sshd
mkdir -p "$SSHD_DIR" "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
unset SSH_AUTH_SOCK SSH_AGENT_PID

install_cleanup() {
    stop_sshds
    release_chroot "$ROOT"
    rm -rf --one-file-system "$ROOT"
    rm -f "$KEYS"
    userdel "$SUDOER" 2>/dev/null
    groupdel -f "${SUDOER}d" 2>/dev/null
}
at_exit install_cleanup

in_root() {
    chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

# --- the packages: this tree's, and a second Debian revision for the upgrade ---------------
build_agent_deb() {
    run cpack --config "$BUILD_DIR/CPackConfig.cmake" -B "$1" "${@:2}"
    [[ $RC == 0 ]] || fail "cpack builds the packages into $1" "$(excerpt "$OUT_FILE")" "$(excerpt "$ERR_FILE")"
    compgen -G "$1/deploy-agent_*_*.deb"
}
AGENT_DEB=$(build_agent_deb "$TEST_TMP/debs1")
AGENT_DEB2=$(build_agent_deb "$TEST_TMP/debs2" -D CPACK_DEBIAN_PACKAGE_RELEASE=2)
VERSION=$(dpkg-deb -f "$AGENT_DEB" Version)
VERSION2=$(dpkg-deb -f "$AGENT_DEB2" Version)
pass "packages $(basename "$AGENT_DEB") and $(basename "$AGENT_DEB2")"

# --- the server: a clean Debian 12 behind a real sshd ------------------------------------
debian_rootfs "$ROOT"
mount -t proc proc "$ROOT/proc" || fail "mount /proc in the server's root"
mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev" || fail "bind /dev into the server's root"
cp "$BUSYBOX_BIN" "$ROOT/bin/busybox"
# A user who is not root, with sudo asking a password (the same name and uid on this
# machine: sshd looks the user up before it changes root).
run in_root apt-get install -y -q --no-install-recommends sudo
[[ $RC == 0 ]] || fail "sudo installed on the server" "$(excerpt "$ERR_FILE")"
in_root useradd -m -s /bin/bash "$SUDOER" || fail "a user $SUDOER on the server"
SUDOER_UID=$(in_root id -u "$SUDOER")
useradd -M -s /bin/bash -u "$SUDOER_UID" -o "$SUDOER" && usermod -p '*' "$SUDOER" ||
    fail "the user $SUDOER on this machine, for sshd"
echo "$SUDOER:s3cret-pw" | in_root chpasswd
echo "$SUDOER ALL=(ALL) ALL" >"$ROOT/etc/sudoers.d/it" && chmod 440 "$ROOT/etc/sudoers.d/it"
rm -f "$ROOT/usr/sbin/policy-rc.d"

ssh-keygen -q -t ed25519 -N '' -C it-host -f "$SSHD_DIR/host_key"
ssh-keygen -q -t ed25519 -N '' -C it-user -f "$HOME/.ssh/id_ed25519"
cp "$HOME/.ssh/id_ed25519.pub" "$SSHD_DIR/authorized_keys"
# sshd reads the keys as the user logging in: a copy that user may read.
KEYS=$ROOT.authorized_keys
install -m 644 "$SSHD_DIR/authorized_keys" "$KEYS"
start_sshd server "$SSHD_DIR/host_key" "ChrootDirectory $ROOT
AuthorizedKeysFile $KEYS"
SERVER=ssh://root@127.0.0.1:$SSH_PORT
SUDO_SERVER=ssh://$SUDOER@127.0.0.1:$SSH_PORT

# The agent's own ports on this machine's loopback (the chroot shares its network).
API_PORT=$(free_port)
PROXY_PORT=$(free_port)
cat >"$TEST_TMP/agent.toml" <<EOF
# agent.toml for the test server
listen = "127.0.0.1:$API_PORT"

[proxy]
listen = "127.0.0.1:$PROXY_PORT"
EOF

# --- the server's host key: refused when unknown, asked about on a terminal ---------------
assert_exit 3 "$DEPLOYCTL_BIN" agent install "$SERVER" --package "$AGENT_DEB" --dry-run
assert_contains "$ERR" "not known" "an unknown host key without a terminal or --yes: refused"
assert_false "refused: known_hosts not written" test -e "$HOME/.ssh/known_hosts"
on_terminal() { # on_terminal ANSWER CMD...: CMD on a terminal (script(1)), ANSWER typed
    local command
    command=$(printf '%q ' "$@")
    printf '%s\n' "$1" | script -qec "${command#* }" /dev/null
}
run on_terminal n "$DEPLOYCTL_BIN" agent install "$SERVER" --package "$AGENT_DEB" --dry-run
assert_eq 3 "$RC" "host key question answered n: exit 3"
assert_contains "$OUT" "Trust it and record it in known_hosts?" "the host key is asked about on a terminal"
assert_contains "$OUT" "$(ssh-keygen -l -E sha256 -f "$SSHD_DIR/host_key.pub" | awk '{print $2}')" \
    "the question shows the key's fingerprint"
assert_false "answered n: known_hosts not written" test -e "$HOME/.ssh/known_hosts"
run on_terminal y "$DEPLOYCTL_BIN" agent install "$SERVER" --package "$AGENT_DEB" --dry-run
assert_eq 0 "$RC" "host key question answered y: the dry run goes on"
assert_contains "$(cat "$HOME/.ssh/known_hosts")" "[127.0.0.1]:$SSH_PORT" "answered y: the key is recorded"
rm "$HOME/.ssh/known_hosts"

# --- --dry-run: looks, lists, changes nothing ---------------------------------------------
assert_exit 0 "$DEPLOYCTL_BIN" --json agent install "$SERVER" --package "$AGENT_DEB" \
    --config "$TEST_TMP/agent.toml" --engine process --dry-run --yes
DRY=$(jq -s . "$OUT_FILE")
assert_jq "$DRY" 'any(.[]; .event == "install_step" and .step == "install" and .state == "would" and
    (.commands | any(test("apt-get install"))))' "--dry-run lists the apt-get install it would run"
assert_jq "$DRY" 'any(.[]; .step == "service" and .state == "would" and (.commands | any(test("start-stop-daemon"))))' \
    "--dry-run lists how it would start the agent (no systemd on the server)"
assert_jq "$DRY" 'all(.[]; .state != "done" or .step == "connect")' "--dry-run did nothing"
assert_jq "$DRY" '.[-1].event == "installed" and .[-1].dry_run == true' "--dry-run ends saying so"
assert_eq "" "$(in_root dpkg-query -W -f '${Status}' deploy-agent 2>/dev/null || true)" \
    "--dry-run: deploy-agent is not installed"
assert_false "--dry-run: nothing copied" test -e "$ROOT/root/.cache/deploy-agent"
assert_contains "$(cat "$HOME/.ssh/known_hosts")" "[127.0.0.1]:$SSH_PORT" "--yes recorded the server's host key"

# --- install ----------------------------------------------------------------------------------
start_ms=$(date +%s%3N)
assert_exit 0 "$DEPLOYCTL_BIN" --no-color agent install "$SERVER" --package "$AGENT_DEB" \
    --config "$TEST_TMP/agent.toml" --engine process
install_ms=$(($(date +%s%3N) - start_ms))
log "$(cat "$OUT_FILE")"
assert_contains "$OUT" "deploy-agent ${VERSION%-*}" "install: says which version answers" # the agent reports the upstream version
for step in upload install config service; do
    assert_match "$OUT" "✓ $step " "install: step $step done"
done
assert_eq "install ok installed $VERSION" "$(in_root dpkg-query -W -f '${Status} ${Version}' deploy-agent)" \
    "deploy-agent $VERSION installed with apt"
assert_eq "$(cat "$TEST_TMP/agent.toml")" "$(sed 1d "$ROOT/etc/deploy-agent/agent.toml")" \
    "/etc/deploy-agent/agent.toml is the one given, after the engine line"
assert_eq 'engine = "process"' "$(head -n1 "$ROOT/etc/deploy-agent/agent.toml")" "--engine process: set in agent.toml"
assert_true "the agent answers on its API port" curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/v1/health"
agent_pid=$(cat "$ROOT/run/deploy-agent/agent.pid")
assert_eq "$(in_root id -u deploy-agent)" "$(ps -o uid= -p "$agent_pid" | tr -d ' ')" "the agent runs as user deploy-agent"
log "install to answering: $install_ms ms"

# --- deploy examples/hello through it ------------------------------------------------------
APPDIR=$TEST_TMP/hello
cp -r "$REPO_ROOT/examples/hello" "$APPDIR"
git -C "$APPDIR" init -q && git -C "$APPDIR" add -A && git -C "$APPDIR" -c user.email=it@example.com -c user.name=it commit -q -m hello
deploy_ms_start=$(date +%s%3N)
assert_exit 0 "$DEPLOYCTL_BIN" -C "$APPDIR" --no-color deploy --host "$SERVER"
log "first deploy: $(($(date +%s%3N) - deploy_ms_start)) ms; clean server to serving: $(($(date +%s%3N) - start_ms)) ms"
assert_contains "$(fetch hello /)" "$(cat "$APPDIR/VERSION")" "examples/hello deployed through the installed agent is served"

# --- a second run changes nothing ------------------------------------------------------------
assert_exit 0 "$DEPLOYCTL_BIN" --json agent install "$SERVER" --package "$AGENT_DEB" \
    --config "$TEST_TMP/agent.toml" --engine process
AGAIN=$(jq -s . "$OUT_FILE")
assert_jq "$AGAIN" 'all(.[]; .event != "install_step" or .state == "unchanged" or .step == "connect")' \
    "second run: every step unchanged"
assert_jq "$AGAIN" '.[-1].event == "installed" and .[-1].changed == false' "second run: says nothing changed"
assert_eq "$agent_pid" "$(cat "$ROOT/run/deploy-agent/agent.pid")" "second run: the agent was not restarted"

# --- --https: a certificate for the server, an admin token and its pin here ---------------
HTTPS_PORT=$(free_port)
HTTPS_URL=https://127.0.0.1:$HTTPS_PORT
CREDENTIALS=$HOME/.config/deployctl/credentials
unset DEPLOYCTL_TOKEN
https_install() {
    "$DEPLOYCTL_BIN" --json agent install "$SERVER" --package "$AGENT_DEB" --config "$TEST_TMP/agent.toml" \
        --engine process --https --https-listen "127.0.0.1:$HTTPS_PORT"
}
assert_exit 0 https_install
HTTPS=$(jq -s . "$OUT_FILE")
for step in tls config service token; do
    assert_jq "$HTTPS" "any(.[]; .step == \"$step\" and .state == \"done\")" "--https: step $step done"
done
cert_fp=$(openssl x509 -in "$ROOT/etc/deploy-agent/tls/agent.pem" -noout -fingerprint -sha256 | sed 's/.*=/sha256:/')
assert_match "$(grep "^$HTTPS_URL " "$CREDENTIALS")" "^$HTTPS_URL [^ ]+ $cert_fp\$" \
    "the credentials file has a token for $HTTPS_URL, pinned to the certificate's fingerprint"
assert_contains "$(openssl x509 -in "$ROOT/etc/deploy-agent/tls/agent.pem" -noout -ext subjectAltName)" \
    "IP Address:127.0.0.1" "the certificate names the server"
assert_eq "600 $(in_root id -u deploy-agent)" "$(stat -c '%a %u' "$ROOT/etc/deploy-agent/tls/agent.key")" \
    "the key is the agent's alone (0600)"
assert_exit 0 "$DEPLOYCTL_BIN" -C "$APPDIR" --no-color status --host "$HTTPS_URL"
assert_contains "$OUT" "v1" "status over HTTPS with the stored token and pin, nothing else given"
assert_exit 0 https_install
assert_jq "$(jq -s . "$OUT_FILE")" 'all(.[]; .event != "install_step" or .state == "unchanged" or .step == "connect")' \
    "--https second run: every step unchanged (the certificate, the config, the token kept)"
assert_eq "$cert_fp" "$(grep "^$HTTPS_URL " "$CREDENTIALS" | cut -d' ' -f3)" "--https second run: the same pin"
agent_pid=$(cat "$ROOT/run/deploy-agent/agent.pid")

# --- --engine docker, dry: the engine installed and the agent put in its group -------------
assert_exit 0 "$DEPLOYCTL_BIN" --json agent install "$SERVER" --package "$AGENT_DEB" --engine docker --dry-run
DOCKER=$(jq -s . "$OUT_FILE")
assert_jq "$DOCKER" 'any(.[]; .step == "engine" and .state == "would" and (.commands | any(test("apt-get install .*docker.io"))) and (.commands | any(. == "usermod -aG docker deploy-agent")))' \
    "--engine docker --dry-run: would install docker.io and put deploy-agent in group docker"
assert_jq "$DOCKER" 'any(.[]; .step == "config" and .state == "would" and (.detail | test("engine = \"docker\"")))' \
    "--engine docker --dry-run: would set engine = \"docker\" in agent.toml"
assert_eq 'engine = "process"' "$(head -n1 "$ROOT/etc/deploy-agent/agent.toml")" "--dry-run left agent.toml alone"

# --- refusals -----------------------------------------------------------------------------
assert_exit 2 "$DEPLOYCTL_BIN" agent install "$SERVER" --package "$REPO_ROOT/README.md"
assert_contains "$ERR" "not" "a file that is not the package: refused"
assert_exit 2 "$DEPLOYCTL_BIN" agent install "http://127.0.0.1:$API_PORT" --package "$AGENT_DEB"
assert_contains "$ERR" "ssh://" "an http:// URL: agent install works over SSH"

# --- upgrade by a user who is not root, through sudo with a password ------------------------
# sshd sets a user's groups from this machine's /etc/group, before it changes root: the
# server's group deploy gets a twin here, which the installer's usermod on the server
# (checked below) stands for.
# sudoers wants a terminal for this user: deployctl asks for one (ssh -t).
echo "Defaults:$SUDOER requiretty" >>"$ROOT/etc/sudoers.d/it"
run in_root su -s /bin/sh -c 'echo s3cret-pw | sudo -S true' "$SUDOER"
assert_contains "$OUT$ERR" "must have a tty" "sudo there refuses to run without a terminal"
DEPLOY_GID=$(in_root getent group deploy | cut -d: -f3)
groupadd -o -g "$DEPLOY_GID" "${SUDOER}d" && usermod -aG "${SUDOER}d" "$SUDOER" ||
    fail "a twin of the server's group deploy on this machine"
assert_exit 0 "$DEPLOYCTL_BIN" --no-color agent upgrade "$SUDO_SERVER" --package "$AGENT_DEB2" <<<"s3cret-pw"
log "$(cat "$OUT_FILE")"
assert_contains "$OUT" "sudo" "upgrade as $SUDOER: through sudo"
assert_not_contains "$OUT$ERR" "s3cret-pw" "the sudo password is never printed"
assert_eq "install ok installed $VERSION2" "$(in_root dpkg-query -W -f '${Status} ${Version}' deploy-agent)" \
    "upgraded to $VERSION2"
assert_contains "$(in_root id -nG "$SUDOER")" "deploy" "$SUDOER is in group deploy"
assert_false "the agent was restarted" test "$agent_pid" = "$(cat "$ROOT/run/deploy-agent/agent.pid")"
assert_contains "$(fetch hello /)" "$(cat "$APPDIR/VERSION")" "the app serves after the upgrade"
assert_exit 0 "$DEPLOYCTL_BIN" -C "$APPDIR" --no-color status --host "$SUDO_SERVER"
assert_contains "$OUT" "v1" "$SUDOER deploys over SSH: status through the socket"
assert_exit 2 "$DEPLOYCTL_BIN" agent upgrade "$SERVER" --package "$AGENT_DEB" --yes
assert_contains "$ERR" "downgrade" "upgrade to an older package: refused"
assert_eq "install ok installed $VERSION2" "$(in_root dpkg-query -W -f '${Status} ${Version}' deploy-agent)" \
    "the refused downgrade changed nothing"
assert_exit 3 "$DEPLOYCTL_BIN" agent upgrade "$SUDO_SERVER" --package "$AGENT_DEB2" <<<"wrong-password"
assert_contains "$ERR" "refused the password" "a wrong sudo password: refused, exit 3"
