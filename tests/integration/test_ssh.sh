#!/usr/bin/env bash
# ssh:// hosts against a real OpenSSH sshd on 127.0.0.1 with its own host key
# and authorized_keys: host key checks (unknown, accepted, hashed, changed),
# key and ssh-agent logins, deploy / logs -f / rollback / --json over SSH, the
# agent command's errors, and a connection dropped in the middle of logs -f.
source "$(dirname "$0")/lib.sh"
require_binaries

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}
require_tools "openssh-server openssh-client" "$SSHD_BIN" ssh-keygen ssh-agent ssh-add

SSH_USER=$(id -un)
SSHD_DIR=$TEST_TMP/sshd
mkdir -p "$SSHD_DIR" "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
unset SSH_AUTH_SOCK SSH_AGENT_PID
KNOWN=$HOME/.ssh/known_hosts

ssh-keygen -q -t ed25519 -N '' -C it-host -f "$SSHD_DIR/host_key"
ssh-keygen -q -t ed25519 -N '' -C it-other-host -f "$SSHD_DIR/other_host_key"
ssh-keygen -q -t ed25519 -N '' -C it-user -f "$HOME/.ssh/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C it-wrong -f "$HOME/.ssh/wrong_key"
cp "$HOME/.ssh/id_ed25519.pub" "$SSHD_DIR/authorized_keys"
fingerprint() { ssh-keygen -l -E sha256 -f "$1" | awk '{print $2}'; }
HOST_FP=$(fingerprint "$SSHD_DIR/host_key.pub")
OTHER_FP=$(fingerprint "$SSHD_DIR/other_host_key.pub")

ssh_cleanup() {
    stop_sshds
    [[ -n ${IT_SSH_AGENT_PID:-} ]] && kill "$IT_SSH_AGENT_PID" 2>/dev/null
}
# (errexit is off in the trap: a failed test's status still reaches stop_all, which prints the
# agent's log and ends everything the test started)
at_exit ssh_cleanup

start_agent
start_sshd main "$SSHD_DIR/host_key"
MAIN_PORT=$SSH_PORT
SSH_URL=ssh://$SSH_USER@127.0.0.1:$MAIN_PORT
AGENT_COMMAND="'$AGENT_BIN' dial-stdio --socket '$AGENT_SOCKET'"

make_app_repo hello hosts="\"$SSH_URL\""
printf 'agent_command = %s\n' "$(toml_string "$AGENT_COMMAND")" >>"$REPO/deploy.toml"
git -C "$REPO" commit -q -am "Deploy over SSH"
APP=hello
sctl() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color "$@"; }
release_count() { sqlite3 "$DATA/state.db" "select count(*) from releases where app='hello'"; }

# --- an unknown host key stops everything ----------------------------------------------
assert_exit 3 sctl deploy
assert_contains "$ERR" "not known" "unknown key: says the host key is not known"
assert_contains "$ERR" "[127.0.0.1]:$MAIN_PORT" "unknown key: names the server as known_hosts does"
assert_contains "$ERR" "ssh-ed25519 $HOST_FP" "unknown key: shows the key type and SHA256 fingerprint"
assert_contains "$ERR" "ssh-keyscan -p $MAIN_PORT 127.0.0.1" "unknown key: says how to add it"
assert_contains "$ERR" "--accept-new-host-key" "unknown key: mentions --accept-new-host-key"
assert_eq 0 "$(release_count)" "unknown key: nothing deployed"
assert_false "unknown key: known_hosts not written" test -e "$KNOWN"

# --- --accept-new-host-key records it, and the deploy goes through ---------------------
assert_exit 0 sctl deploy --accept-new-host-key
assert_contains "$ERR$OUT" "$HOST_FP" "accept-new: says which key it recorded"
expect_serving $APP "hello from 1" "deployed over SSH: v1 served through the proxy"
assert_eq "[127.0.0.1]:$MAIN_PORT $(cut -d' ' -f1,2 "$SSHD_DIR/host_key.pub")" "$(cat "$KNOWN")" \
    "known_hosts has the server's key in OpenSSH format"
assert_eq 600 "$(stat -c %a "$KNOWN")" "known_hosts is 0600"
assert_eq 700 "$(stat -c %a "$HOME/.ssh")" "~/.ssh is 0700"

# --- deploy, status, --json over SSH (the key is known now) ----------------------------
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 sctl deploy
expect_serving $APP "hello from 2" "second deploy over SSH: v2 served"
assert_exit 0 sctl status
assert_contains "$OUT" "v2" "status over SSH names v2"
# The audit names the SSH user: dial-stdio runs in the SSH session (no token there).
assert_exit 0 sctl audit --json
assert_jq "$(jq -s . <"$OUT_FILE")" \
    "any(.[]; .who == \"ssh:$SSH_USER\" and .path == \"/v1/apps/hello/deployments\" and .release == \"v2\")" \
    "audit over SSH: the deploy of v2 by ssh:$SSH_USER"

commit_change "$REPO" "Version 3" VERSION 3
assert_exit 0 sctl --json deploy
all_json() { jq -e -c . "$1" >/dev/null 2>&1; }
assert_true "deploy --json over SSH prints only JSON lines" all_json "$OUT_FILE"
assert_jq "$(tail -n1 "$OUT_FILE")" '.event == "done" and .state == "PRODUCTION" and .release == "v3"' \
    "deploy --json over SSH: done, v3 in PRODUCTION"
assert_jq "$(tail -n1 "$OUT_FILE")" ".host == \"$SSH_URL\"" "deploy --json: events name the ssh:// host"
expect_serving $APP "hello from 3" "v3 served"

# --- rollback over SSH -----------------------------------------------------------------
assert_exit 0 sctl rollback
expect_serving $APP "hello from 2" "rollback over SSH: v2 served again"
assert_eq v2 "$(sctl --json status | jq -r .production)" "status --json over SSH: production is v2"

# --- a large upload goes through the tunnel's flow control ------------------------------
make_app_repo big hosts="\"$SSH_URL\""
BIG=$REPO
REPO=$TEST_TMP/repos/hello
printf 'agent_command = %s\n' "$(toml_string "$AGENT_COMMAND")" >>"$BIG/deploy.toml"
head -c $((24 * 1024 * 1024)) /dev/urandom >"$BIG/large.bin"
git -C "$BIG" add -A && git -C "$BIG" commit -q -m "A large file"
assert_exit 0 "$DEPLOYCTL_BIN" -C "$BIG" --no-color deploy
assert_eq "$(sha256sum <"$BIG/large.bin")" "$(sha256sum <"$(release_dir big v1)/large.bin")" \
    "a 24 MiB file deployed over SSH arrives intact"
expect_serving big "hello from 1" "the large app is served"

# --- logs -f over SSH shows a line written after it started ----------------------------
FOLLOW=$TEST_TMP/follow.out
sctl logs -f >"$FOLLOW" 2>"$TEST_TMP/follow.err" &
follow_pid=$!
has_build_line() { grep -q "building 2" "$FOLLOW"; }
wait_until 10 has_build_line || fail "logs -f over SSH prints the existing lines" "$(excerpt "$FOLLOW")" \
    "stderr:" "$(excerpt "$TEST_TMP/follow.err")"
pass "logs -f over SSH prints the existing lines"
marker=marker-$RANDOM$RANDOM
sleep 1
echo "late line $marker" >>"$DATA/apps/$APP/logs/v2.app.log"
has_marker() { grep -q "$marker" "$FOLLOW"; }
wait_until 5 has_marker || fail "logs -f over SSH shows a new line within 5 s" "$(excerpt "$FOLLOW")"
pass "logs -f over SSH shows a line written after it started"
assert_true "logs -f keeps running" alive "$follow_pid"
kill "$follow_pid" 2>/dev/null
wait "$follow_pid" 2>/dev/null || true

# --- a hashed known_hosts entry (ssh-keygen -H) is recognised --------------------------
ssh-keygen -q -H -f "$KNOWN" >/dev/null 2>&1
rm -f "$KNOWN.old"
assert_not_contains "$(cat "$KNOWN")" "127.0.0.1" "known_hosts is hashed now"
assert_match "$(cat "$KNOWN")" '^\|1\|' "known_hosts has a |1| entry"
assert_exit 0 sctl status
assert_contains "$OUT" "v2" "status over SSH with a hashed known_hosts entry"

# --- a changed host key is refused -----------------------------------------------------
# A second sshd with another key; known_hosts is told it should have the first one.
start_sshd other "$SSHD_DIR/other_host_key"
OTHER_PORT=$SSH_PORT
echo "[127.0.0.1]:$OTHER_PORT $(cut -d' ' -f1,2 "$SSHD_DIR/host_key.pub")" >>"$KNOWN"
cp "$KNOWN" "$TEST_TMP/known_hosts.before"
assert_exit 3 sctl status --host "ssh://$SSH_USER@127.0.0.1:$OTHER_PORT" --accept-new-host-key
assert_contains "$ERR" "HOST KEY CHANGED" "changed key: says so"
assert_contains "$ERR" "$HOST_FP" "changed key: shows the known fingerprint"
assert_contains "$ERR" "$OTHER_FP" "changed key: shows the offered fingerprint"
assert_contains "$ERR" "ssh-keygen -R '[127.0.0.1]:$OTHER_PORT'" "changed key: says how to remove the old key"
assert_eq "$(cat "$TEST_TMP/known_hosts.before")" "$(cat "$KNOWN")" \
    "changed key: --accept-new-host-key did not overwrite known_hosts"

# --- logins: a wrong key, ssh-agent ---------------------------------------------------
OTHER=$TEST_TMP/other-dir
mkdir -p "$OTHER"
cat >"$OTHER/deploy.toml" <<EOF
app = "hello"
[targets.production]
hosts = ["$SSH_URL"]
agent_command = $(toml_string "$AGENT_COMMAND")
identity_file = "~/.ssh/wrong_key"
EOF
assert_exit 3 "$DEPLOYCTL_BIN" -C "$OTHER" --no-color status
assert_contains "$ERR" "permission denied for $SSH_USER@127.0.0.1:$MAIN_PORT" "wrong key: permission denied, names user and server"
assert_contains "$ERR" "~/.ssh/wrong_key" "wrong key: says which key was tried"
sed -i 's|~/.ssh/wrong_key|~/.ssh/missing_key|' "$OTHER/deploy.toml"
assert_exit 2 "$DEPLOYCTL_BIN" -C "$OTHER" --no-color status
assert_contains "$ERR" "missing_key does not exist" "a missing identity_file is a config error"

# Only ssh-agent holds the right key: the key files are moved away.
eval "$(ssh-agent -s -a "$TEST_TMP/ssh-agent.sock")" >/dev/null
IT_SSH_AGENT_PID=$SSH_AGENT_PID
ssh-add -q "$HOME/.ssh/id_ed25519" 2>/dev/null
mv "$HOME/.ssh/id_ed25519" "$TEST_TMP/id_ed25519.away"
assert_exit 0 sctl status
assert_contains "$OUT" "v2" "login with ssh-agent (no key files)"
ssh-add -q -D 2>/dev/null
assert_exit 3 sctl status
assert_contains "$ERR" "tried: ssh-agent with 0 keys" "an empty ssh-agent: the error says what was tried"
kill "$SSH_AGENT_PID"
IT_SSH_AGENT_PID=""
unset SSH_AUTH_SOCK SSH_AGENT_PID
mv "$TEST_TMP/id_ed25519.away" "$HOME/.ssh/id_ed25519"

# --- the agent command's errors reach the user ------------------------------------------
sed -i "s|^agent_command = .*|agent_command = $(toml_string "'$AGENT_BIN' dial-stdio --socket $TEST_TMP/nowhere.sock")|" \
    "$OTHER/deploy.toml"
sed -i '/^identity_file/d' "$OTHER/deploy.toml"
echo "agent_socket = \"$TEST_TMP/nowhere.sock\"" >>"$OTHER/deploy.toml"
assert_exit 3 "$DEPLOYCTL_BIN" -C "$OTHER" --no-color status
assert_contains "$ERR" "cannot connect to $TEST_TMP/nowhere.sock" "no agent socket: dial-stdio's reason is shown"
assert_contains "$ERR" "is deploy-agent serve running?" "no agent socket: with the hint"
assert_contains "$ERR" "refused a channel to the agent's socket $TEST_TMP/nowhere.sock" \
    "no agent socket: the direct-streamlocal channel to it was refused first"
sed -i '/^agent_socket/d' "$OTHER/deploy.toml"
sed -i "s|^agent_command = .*|agent_command = \"/nonexistent/deploy-agent dial-stdio\"|" "$OTHER/deploy.toml"
assert_exit 3 "$DEPLOYCTL_BIN" -C "$OTHER" --no-color status
assert_contains "$ERR" "status 127" "a missing agent binary: exit status 127 is shown"
assert_contains "$ERR" "agent_command" "a missing agent binary: points at agent_command"

# --- nobody listening --------------------------------------------------------------------
closed_port=$(free_port)
assert_exit 3 sctl status --host "ssh://$SSH_USER@127.0.0.1:$closed_port"
assert_contains "$ERR" "127.0.0.1:$closed_port" "connection refused: names the address"
assert_match "$ERR" "refused" "connection refused: says so"

# --- the connection drops in the middle of logs -f -------------------------------------
sctl logs -f >"$FOLLOW" 2>"$TEST_TMP/drop.err" &
follow_pid=$!
wait_until 10 has_build_line || fail "logs -f over SSH before the drop" "$(excerpt "$TEST_TMP/drop.err")"
kill_tree "${SSHD_PIDS[0]}"
pass "sshd and its connections killed"
wait_until 20 dead "$follow_pid" || fail "logs -f ends when the SSH connection drops" "still running after 20 s"
rc=0
wait "$follow_pid" || rc=$?
assert_eq 3 "$rc" "logs -f exits 3 when the SSH connection drops"
assert_contains "$(cat "$TEST_TMP/drop.err")" "the SSH connection to $SSH_USER@127.0.0.1:$MAIN_PORT was lost: the server closed the connection" \
    "the error says the connection was lost"
assert_exit 0 dctl status
assert_contains "$OUT" "v2" "status over HTTP after the drop: the agent is consistent"
expect_serving $APP "hello from 2" "still serving v2 after the drop"

# --- direct-streamlocal: the agent's socket reached without running a command -----------
# agent_socket names it; the agent command is one that cannot run, so a deploy that works
# went through a channel sshd connected to the socket itself.
start_sshd direct "$SSHD_DIR/host_key"
DIRECT_URL=ssh://$SSH_USER@127.0.0.1:$SSH_PORT
start_sshd no-forwarding "$SSHD_DIR/host_key" "AllowStreamLocalForwarding no"
REFUSING_URL=ssh://$SSH_USER@127.0.0.1:$SSH_PORT
cat >>"$REPO/deploy.toml" <<EOF
[targets.direct]
hosts = ["$DIRECT_URL"]
agent_command = "/nonexistent/deploy-agent dial-stdio"
agent_socket = $(toml_string "$AGENT_SOCKET")
[targets.refusing]
hosts = ["$REFUSING_URL"]
agent_command = "/nonexistent/deploy-agent dial-stdio"
agent_socket = $(toml_string "$AGENT_SOCKET")
[targets.fallback]
hosts = ["$REFUSING_URL"]
agent_command = $(toml_string "$AGENT_COMMAND")
agent_socket = $(toml_string "$AGENT_SOCKET")
EOF
commit_change "$REPO" "Version 4" VERSION 4
assert_exit 0 sctl -t direct deploy --accept-new-host-key
assert_not_contains "$ERR" "nonexistent" "streamlocal: no agent command was run"
expect_serving $APP "hello from 4" "deployed through a direct-streamlocal channel: v4 served"
assert_exit 0 sctl -t direct audit --json
assert_jq "$(jq -s . <"$OUT_FILE")" \
    "any(.[]; .who == \"ssh:$SSH_USER\" and .path == \"/v1/apps/hello/deployments\" and .release == \"v4\")" \
    "streamlocal: the audit names the deploy of v4 by ssh:$SSH_USER (the peer is sshd)"
assert_not_contains "$(cat "$SSHD_DIR/direct.log")" "Starting session" \
    "streamlocal: sshd started no session for the agent"
# A server that refuses such channels gets the agent command: its error is shown, and
# that the socket was refused first.
assert_exit 3 sctl -t refusing status --accept-new-host-key
assert_contains "$ERR" "status 127" "refused streamlocal: the agent command ran instead"
assert_contains "$ERR" "refused a channel to the agent's socket $AGENT_SOCKET" \
    "refused streamlocal: the error says the socket was refused first"
assert_exit 0 sctl -t fallback status
assert_contains "$OUT" "v4" "refused streamlocal: a working agent_command serves instead"

# --- a non-root agent that cannot create the default socket ---------------------------
# Nobody asked for a socket: it serves the API on TCP only, with a warning. (One asked
# for with --socket must work, or the agent does not start.)
chmod 711 "$TEST_TMP"
NOBODY_DIR=$TEST_TMP/nobody
mkdir -p "$NOBODY_DIR"
chown 65534:65534 "$NOBODY_DIR"
nobody_port=$(free_port)
setpriv --reuid=65534 --regid=65534 --clear-groups "$AGENT_BIN" serve --data-dir "$NOBODY_DIR/data" \
    --listen "127.0.0.1:$nobody_port" --proxy-listen "127.0.0.1:$(free_port)" --engine process \
    --proxy-bin "$PROXY_BIN" </dev/null >"$NOBODY_DIR/agent.log" 2>&1 &
nobody_pid=$!
echo "$nobody_pid" >>"$TEST_TMP/agent.pids"
assert_true "a non-root agent without --socket starts" \
    wait_until 10 curl -fsS -o /dev/null "http://127.0.0.1:$nobody_port/v1/health"
assert_contains "$(cat "$NOBODY_DIR/agent.log")" "the API is served on TCP only" "and says it has no unix socket"
assert_exit 1 setpriv --reuid=65534 --regid=65534 --clear-groups "$AGENT_BIN" serve \
    --data-dir "$NOBODY_DIR/data2" --listen "127.0.0.1:$(free_port)" \
    --proxy-listen "127.0.0.1:$(free_port)" --engine process --socket /run/deploy-agent-test/agent.sock
assert_contains "$ERR" "--socket" "a socket asked for and not possible stops the agent, saying how to fix it"
kill "$nobody_pid" 2>/dev/null || true
kill "$(cat "$NOBODY_DIR/data/proxy/proxy.pid" 2>/dev/null)" 2>/dev/null || true
