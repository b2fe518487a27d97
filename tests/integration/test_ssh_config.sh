#!/usr/bin/env bash
# ~/.ssh/config for ssh:// hosts, against real OpenSSH sshds on 127.0.0.1: a Host alias
# (HostName, User, Port, IdentityFile, IdentitiesOnly, UserKnownHostsFile,
# StrictHostKeyChecking accept-new), ProxyJump through two bastions that only forward
# (each to the next hop alone, no shell), a bastion refusing a forward it does not allow,
# a bastion's changed host key refused, StrictHostKeyChecking no and ProxyCommand refused,
# -F and DEPLOYCTL_SSH_CONFIG.
source "$(dirname "$0")/lib.sh"
require_binaries

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}
require_tools "openssh-server openssh-client" "$SSHD_BIN" ssh-keygen

SSH_USER=$(id -un)
SSHD_DIR=$TEST_TMP/sshd
mkdir -p "$SSHD_DIR" "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
unset SSH_AUTH_SOCK SSH_AGENT_PID
TEAM_KNOWN=$HOME/.ssh/known_hosts_team

for name in target jump1 jump2 impostor; do
    ssh-keygen -q -t ed25519 -N '' -C "it-$name" -f "$SSHD_DIR/${name}_key"
done
# The login key is not where deployctl looks by default: only IdentityFile finds it.
ssh-keygen -q -t ed25519 -N '' -C it-user -f "$HOME/.ssh/team_key"
cp "$HOME/.ssh/team_key.pub" "$SSHD_DIR/authorized_keys"
fingerprint() { ssh-keygen -l -E sha256 -f "$1" | awk '{print $2}'; }

at_exit stop_sshds

start_agent
# The bastions forward only to the next hop and run nothing; they log each forward.
bastion_only() {
    printf 'AllowTcpForwarding yes\nPermitOpen 127.0.0.1:%s\nForceCommand /bin/false\nPermitTTY no\nLogLevel DEBUG1\n' "$1"
}
start_sshd target "$SSHD_DIR/target_key"
TARGET_PORT=$SSH_PORT
start_sshd jump2 "$SSHD_DIR/jump2_key" "$(bastion_only "$TARGET_PORT")"
JUMP2_PORT=$SSH_PORT
start_sshd jump1 "$SSHD_DIR/jump1_key" "$(bastion_only "$JUMP2_PORT")"
JUMP1_PORT=$SSH_PORT
AGENT_COMMAND="'$AGENT_BIN' dial-stdio --socket '$AGENT_SOCKET'"

cat >"$HOME/.ssh/config" <<EOF
# Production, as a team writes it.
Host web
    HostName 127.0.0.1
    Port $TARGET_PORT

Host behind
    HostName 127.0.0.1
    Port $TARGET_PORT
    ProxyJump jump1,jump2

Host sneaky
    HostName 127.0.0.1
    Port $TARGET_PORT
    ProxyJump jump1

Host jump1
    HostName 127.0.0.1
    Port $JUMP1_PORT

Host jump2
    HostName 127.0.0.1
    Port $JUMP2_PORT

Host trusting
    HostName 127.0.0.1
    Port $TARGET_PORT
    StrictHostKeyChecking no

Host piped
    ProxyCommand ssh -W %h:%p jump1

Host *
    User $SSH_USER
    IdentityFile ~/.ssh/team_key
    IdentitiesOnly yes
    UserKnownHostsFile ~/.ssh/known_hosts_team
    StrictHostKeyChecking accept-new
    ServerAliveInterval 5
EOF

make_app_repo hello hosts='"ssh://web"'
printf 'agent_command = %s\n' "$(toml_string "$AGENT_COMMAND")" >>"$REPO/deploy.toml"
git -C "$REPO" commit -q -am "Deploy over SSH to an alias"
APP=hello
sctl() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color "$@"; }
release_count() { sqlite3 "$DATA/state.db" "select count(*) from releases where app='hello'"; }

# --- a Host alias: address, port, user, key and known_hosts file from the config ----------
assert_exit 0 sctl deploy
expect_serving $APP "hello from 1" "deployed to ssh://web, an alias of the ssh config"
assert_contains "$ERR$OUT" "$(fingerprint "$SSHD_DIR/target_key.pub")" \
    "StrictHostKeyChecking accept-new: says which key it recorded"
assert_eq "[127.0.0.1]:$TARGET_PORT $(cut -d' ' -f1,2 "$SSHD_DIR/target_key.pub")" "$(cat "$TEAM_KNOWN")" \
    "the key is recorded in UserKnownHostsFile, under HostName and Port"
assert_false "~/.ssh/known_hosts is not written" test -e "$HOME/.ssh/known_hosts"
assert_contains "$(cat "$SSHD_DIR/target.log")" "Accepted publickey for $SSH_USER" \
    "logged in with the IdentityFile key as the config's User"

# --- ProxyJump: two bastions that only forward ------------------------------------------
commit_change "$REPO" "Version 2" VERSION 2
head -c $((6 * 1024 * 1024)) /dev/urandom >"$REPO/large.bin"
git -C "$REPO" add -A && git -C "$REPO" commit -q -m "A large file"
assert_exit 0 sctl deploy --host ssh://behind
expect_serving $APP "hello from 2" "deployed through ProxyJump jump1,jump2"
assert_eq "$(sha256sum <"$REPO/large.bin")" "$(sha256sum <"$(release_dir $APP v2)/large.bin")" \
    "a 6 MiB file crosses both bastions intact"
assert_eq 3 "$(wc -l <"$TEAM_KNOWN")" "each hop's host key is checked and recorded (3 entries)"
assert_contains "$(cat "$TEAM_KNOWN")" "[127.0.0.1]:$JUMP1_PORT $(cut -d' ' -f1,2 "$SSHD_DIR/jump1_key.pub")" \
    "jump1's key recorded under its own address"
assert_match "$(cat "$SSHD_DIR/jump1.log")" "direct_tcpip: originator .* target 127\.0\.0\.1 port $JUMP2_PORT" \
    "jump1 forwarded to jump2"
assert_match "$(cat "$SSHD_DIR/jump2.log")" "direct_tcpip: originator .* target 127\.0\.0\.1 port $TARGET_PORT" \
    "jump2 forwarded to the target"
assert_exit 0 sctl --json status --host ssh://behind
assert_jq "$(cat "$OUT_FILE")" '.production == "v2"' "status --json through two bastions"
assert_exit 0 sctl rollback --host ssh://behind
expect_serving $APP "hello from 1" "rollback through two bastions"

# --- a bastion that does not allow the forward --------------------------------------------
before=$(release_count)
commit_change "$REPO" "Version 3" VERSION 3
assert_exit 3 sctl deploy --host ssh://sneaky
assert_contains "$ERR" "through the bastion $SSH_USER@127.0.0.1:$JUMP1_PORT" "a refused forward names the bastion"
assert_contains "$ERR" "127.0.0.1:$TARGET_PORT" "and the address it would not reach"
assert_contains "$ERR" "PermitOpen" "and what allows it"
assert_eq "$before" "$(release_count)" "a refused forward deploys nothing"

# --- a bastion's changed host key is refused --------------------------------------------
cp "$TEAM_KNOWN" "$TEST_TMP/known.before"
sed -i "s|^\[127.0.0.1\]:$JUMP2_PORT .*|[127.0.0.1]:$JUMP2_PORT $(cut -d' ' -f1,2 "$SSHD_DIR/impostor_key.pub")|" "$TEAM_KNOWN"
cp "$TEAM_KNOWN" "$TEST_TMP/known.tampered"
assert_exit 3 sctl deploy --host ssh://behind --accept-new-host-key
assert_contains "$ERR" "HOST KEY CHANGED for [127.0.0.1]:$JUMP2_PORT" "a bastion's changed key: refused, naming the bastion"
assert_contains "$ERR" "$(fingerprint "$SSHD_DIR/jump2_key.pub")" "and showing the key it offered"
assert_eq "$before" "$(release_count)" "a bastion's changed key: nothing deployed"
assert_eq "$(cat "$TEST_TMP/known.tampered")" "$(cat "$TEAM_KNOWN")" "known_hosts is left as it was"
cp "$TEST_TMP/known.before" "$TEAM_KNOWN"

# --- refused settings ---------------------------------------------------------------------
assert_exit 2 sctl status --host ssh://trusting
assert_contains "$ERR" "StrictHostKeyChecking no" "StrictHostKeyChecking no: refused"
assert_contains "$ERR" "accept-new" "and says what to use"
assert_exit 2 sctl status --host ssh://piped
assert_contains "$ERR" "ProxyCommand" "ProxyCommand: refused"
assert_contains "$ERR" "ProxyJump" "and says what to use"

# --- -F FILE, DEPLOYCTL_SSH_CONFIG, none ----------------------------------------------------
ALT=$TEST_TMP/team_ssh_config
cat >"$ALT" <<EOF
Host prod-web
    HostName 127.0.0.1
    Port $TARGET_PORT
    User $SSH_USER
    IdentityFile ~/.ssh/team_key
    UserKnownHostsFile ~/.ssh/known_hosts_team
EOF
assert_exit 0 sctl -F "$ALT" status --host ssh://prod-web
assert_contains "$OUT" "v1" "-F FILE: its alias reaches the server"
assert_exit 0 env DEPLOYCTL_SSH_CONFIG="$ALT" "$DEPLOYCTL_BIN" -C "$REPO" --no-color status --host ssh://prod-web
assert_contains "$OUT" "v1" "DEPLOYCTL_SSH_CONFIG: its alias reaches the server"
assert_exit 3 sctl -F none status --host ssh://web
assert_contains "$ERR" "web" "-F none: the alias means nothing, the name is looked up as given"
assert_exit 2 sctl -F "$TEST_TMP/missing_config" status
assert_contains "$ERR" "does not exist" "-F with a missing file: a config error"

expect_serving $APP "hello from 1" "still serving v1 after the refusals"
