#!/usr/bin/env bash
# deployctl run against a real agent (POST /v1/apps/APP/runs, the upgraded connection of
# docs/api.md "Running a command"): exit statuses (0, 7, 128+N for a signal, 127 for a
# missing binary), stdin piped in, stdout and stderr apart, the app's secrets in the
# command's environment, --release, refusals (unknown release and no PRODUCTION release:
# exit 2; a fifth concurrent run: exit 5), the audit naming the argv, --json events, over
# https:// (token) and ssh://, an interactive -it shell driven through a real pty (the
# terminal's settings unchanged afterwards), and a killed deployctl leaving no command behind.
#
# NEEDS THE AGENT SIDE of `deployctl run` (POST /v1/apps/{app}/runs answering 101): against
# an agent without it, every run is answered 404 and this suite fails at its first check.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v openssl >/dev/null || fail "openssl is needed (scripts/deps installs it)"

SECRET="run-$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"

start_agent
make_app_repo hello
APP=hello
printf '%s\n' "$SECRET" | "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" env set --secret API_TOKEN >/dev/null ||
    fail "env set --secret API_TOKEN"
assert_exit 0 dctl deploy
expect_serving $APP "hello from 1" "v1 served"

# --- exit statuses --------------------------------------------------------------------
assert_exit 0 dctl run -- true
assert_eq "" "$OUT" "run -- true prints nothing"
assert_exit 7 dctl run -- sh -c 'exit 7'
assert_exit 143 dctl run -- sh -c 'kill -TERM $$'
assert_exit 127 dctl run -- no-such-binary-for-run
assert_contains "$ERR" "no-such-binary-for-run" "a missing binary: the error names it"

# --- stdin, stdout, stderr ------------------------------------------------------------
run bash -c "echo hi | \"\$@\"" _ "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" run -- cat
assert_eq 0 "$RC" "echo hi | deployctl run -- cat: exit 0"
assert_eq "hi" "$OUT" "echo hi | deployctl run -- cat prints hi"
head -c 300000 /dev/urandom | base64 -w 100 >"$TEST_TMP/big.txt"
run bash -c "\"\$@\" <\"$TEST_TMP/big.txt\"" _ "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" run -- sha256sum
assert_eq "$(sha256sum <"$TEST_TMP/big.txt")" "$OUT" "400 KB of stdin reach the command whole"
assert_exit 0 dctl run -- sh -c 'echo to-stdout; echo to-stderr >&2'
assert_eq "to-stdout" "$OUT" "stdout holds only the command's stdout"
assert_eq "to-stderr" "$ERR" "stderr holds only the command's stderr"

# --- the app's environment, secrets included -------------------------------------------
assert_exit 0 dctl run -- sh -c 'printf %s "$API_TOKEN"'
assert_eq "$SECRET" "$OUT" "the command sees the secret set with env set --secret"
assert_not_contains "$(cat "$AGENT_LOG")" "$SECRET" "the secret is not in the agent's log"

# --- --release and refusals -------------------------------------------------------------
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dctl deploy
assert_exit 0 dctl run -- cat VERSION
assert_eq 2 "$OUT" "by default the PRODUCTION release (v2)"
assert_exit 0 dctl run --release v1 -- cat VERSION
assert_eq 1 "$OUT" "--release v1 runs in v1"
assert_exit 2 dctl run --release v99 -- true
assert_contains "$ERR" "v99" "an unknown release: named"
assert_exit 2 dctl run --release banana -- true
assert_exit 2 dctl -a no-such-app run -- true

# An app whose only release failed has no PRODUCTION release.
make_app_repo broken build='echo failing; exit 1'
assert_exit 1 dctl deploy
assert_exit 2 dctl run -- true
assert_contains "$ERR" "no PRODUCTION release" "no PRODUCTION release: says so"
assert_contains "$ERR" "--release" "no PRODUCTION release: says how to name one"
REPO=$TEST_TMP/repos/hello

# --- the concurrency cap (max_runs_per_app, default 4) ------------------------------------
# An odd duration: no other suite running beside this one sleeps it.
running_sleeps() { pgrep -fc '^sleep 30\.7$' 2>/dev/null || true; }
sleepers_at_least() { (($(running_sleeps) >= $1)); }
no_sleepers() { (($(running_sleeps) == 0)); }
declare -a SLEEPERS=()
for i in 1 2 3 4; do
    "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" run -- sleep 30.7 </dev/null >/dev/null 2>&1 &
    SLEEPERS+=($!)
done
wait_until 15 sleepers_at_least 4 || fail "4 concurrent runs started" "running: $(running_sleeps)"
pass "4 runs of sleep 30.7 at once"
assert_exit 5 dctl run -- sleep 30.7
assert_contains "$ERR" "4" "the fifth run is refused, naming the cap"
for pid in "${SLEEPERS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
wait_until 10 no_sleepers || fail "the four commands end once their deployctl is gone"
pass "killing the four deployctl ended their commands"
# The agent frees a run's slot once its thread has recorded the end, a moment after the
# process is gone: within 10 s a run works again.
run_works() { "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" run -- true </dev/null >/dev/null 2>&1; }
assert_true "the four slots are free again: a run works" wait_until 10 run_works

# --- a killed deployctl leaves nothing behind --------------------------------------------
"$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" run -- sleep 1017 </dev/null >/dev/null 2>&1 &
KILLED=$!
wait_until 15 pgrep -f '^sleep 1017$' >/dev/null || fail "run -- sleep 1017 started"
kill -9 "$KILLED"
wait_until 5 bash -c "! pgrep -f '^sleep 1017\$' >/dev/null" ||
    fail "kill -9 of deployctl: no sleep 1017 left within 5 s" "$(pgrep -af 'sleep 1017' || true)"
pass "kill -9 of deployctl during run -- sleep 1017: the command is gone within 5 s"

# --- the audit names the argv -------------------------------------------------------------
assert_exit 0 dctl run -- echo audit-marker-42
assert_exit 0 dctl audit --json -a hello
AUDIT=$(jq -s . <<<"$OUT")
assert_jq "$AUDIT" 'any(.[]; .path == "/v1/apps/hello/runs")' "audit: the runs are recorded"
ROWS=$(sqlite3 "$DATA/state.db" "select * from api_audit where path = '/v1/apps/hello/runs'" 2>/dev/null || true)
# The argv: in the audit's JSON (deployctl audit), or at least in its row in state.db.
if jq -e 'any(.[]; .path == "/v1/apps/hello/runs" and (tostring | contains("audit-marker-42")))' <<<"$AUDIT" >/dev/null; then
    pass "audit: deployctl audit names the run's argv"
else
    assert_contains "$ROWS" "audit-marker-42" "audit: the run's row in state.db names its argv"
fi

# --- --json --------------------------------------------------------------------------------
assert_exit 3 dctl --json run -- sh -c 'echo out; echo err >&2; exit 3'
all_json() { jq -e -c . "$1" >/dev/null 2>&1; }
assert_true "run --json prints only JSON lines" all_json "$OUT_FILE"
EVENTS=$(jq -s . <"$OUT_FILE")
assert_jq "$EVENTS" 'any(.[]; .event == "output" and .stream == "stdout" and .data == "out\n")' "--json: the stdout output event"
assert_jq "$EVENTS" 'any(.[]; .event == "output" and .stream == "stderr" and .data == "err\n")' "--json: the stderr output event"
assert_jq "$EVENTS" '.[-1] == {"event":"exit","status":3,"host":"'"$AGENT_URL"'","v":1}' "--json: the exit event last"
assert_exit 143 dctl --json run -- sh -c 'kill -TERM $$'
assert_jq "$(tail -n1 "$OUT_FILE")" '.event == "exit" and .status == 143 and .signal == 15' "--json: a signal death"

# --- -it through a real terminal ----------------------------------------------------------
if command -v script >/dev/null; then
    FIFO=$TEST_TMP/tty.in
    mkfifo "$FIFO"
    # The shell's input arrives slowly, as typed; `stty -g` runs in the same terminal before
    # and after.
    {
        sleep 2
        printf 'echo $((6*7))\r'
        sleep 1
        printf 'exit\r'
        sleep 2
    } >"$FIFO" &
    INNER="stty -g >'$TEST_TMP/stty.before'; '$DEPLOYCTL_BIN' -C '$REPO' --host '$AGENT_URL' run -it -- sh; echo \"rc=\$?\"; stty -g >'$TEST_TMP/stty.after'"
    run timeout 30 script -qfec "$INNER" /dev/null <"$FIFO"
    assert_contains "$OUT" "42" "-it: the shell ran echo \$((6*7))"
    assert_match "$OUT" '[$#] ' "-it: the shell showed a prompt"
    assert_contains "$OUT" "rc=0" "-it: exit ends deployctl with status 0"
    assert_eq "$(cat "$TEST_TMP/stty.before")" "$(cat "$TEST_TMP/stty.after")" "-it: the terminal's settings are as before"
else
    log "script (util-linux) missing: the -it check is skipped"
fi

# -t without a terminal: a warning, and the command runs without one.
run bash -c "\"\$@\" </dev/null" _ "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" run -t -- sh -c 'test -t 0 || echo no-tty'
assert_eq 0 "$RC" "-t without a terminal: exit 0"
assert_eq "no-tty" "$OUT" "-t without a terminal: the command has none"
assert_contains "$ERR" "not a terminal" "-t without a terminal: a warning"

# --- over https:// with a token ------------------------------------------------------------
make_test_ca "$TEST_TMP/pki"
issue_cert agent IP:127.0.0.1 1001
AGENT_EXTRA_ARGS=(--tls-cert "$PKI/agent.crt" --tls-key "$PKI/agent.key")
start_agent tls
AGENT_EXTRA_ARGS=()
assert_exit 0 dctl --ca-file "$PKI/ca.pem" deploy
assert_exit 4 dctl --ca-file "$PKI/ca.pem" run -- sh -c 'cat VERSION; exit 4'
assert_eq 2 "$OUT" "over https: the output"
run bash -c "echo over-tls | \"\$@\"" _ "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" --ca-file "$PKI/ca.pem" run -- cat
assert_eq "over-tls" "$OUT" "over https: stdin and stdout"
# A token the agent does not know: exit 3.
add_credentials "$AGENT_URL" "not-a-valid-token"
assert_exit 3 dctl --ca-file "$PKI/ca.pem" run -- true
# A read token may look, not run: 403, exit 3; a deploy token for the app may run.
for scope in read deploy; do
    scoped=$("$AGENT_BIN" token create --app hello --scope "$scope" --name "run-$scope" --data-dir "$DATA" 2>/dev/null) ||
        fail "deploy-agent token create --scope $scope"
    add_credentials "$AGENT_URL" "$scoped"
    if [[ $scope == read ]]; then
        assert_exit 3 dctl --ca-file "$PKI/ca.pem" run -- true
        assert_contains "$ERR" "403" "a read token cannot run a command (403)"
    else
        assert_exit 0 dctl --ca-file "$PKI/ca.pem" run -- echo deploy-scope
        assert_eq "deploy-scope" "$OUT" "a deploy token for the app runs a command"
    fi
done
add_credentials "$AGENT_URL" "$DEPLOYCTL_TOKEN"

# --- over ssh:// ---------------------------------------------------------------------------
SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}
if command -v "$SSHD_BIN" >/dev/null && command -v ssh-keygen >/dev/null; then
    SSHD_DIR=$TEST_TMP/sshd
    mkdir -p "$SSHD_DIR" "$HOME/.ssh"
    chmod 700 "$HOME/.ssh"
    unset SSH_AUTH_SOCK SSH_AGENT_PID
    ssh-keygen -q -t ed25519 -N '' -C it-host -f "$SSHD_DIR/host_key"
    ssh-keygen -q -t ed25519 -N '' -C it-user -f "$HOME/.ssh/id_ed25519"
    cp "$HOME/.ssh/id_ed25519.pub" "$SSHD_DIR/authorized_keys"
    at_exit stop_sshds
    start_sshd main "$SSHD_DIR/host_key"
    # The https agent, reached through its unix socket over SSH.
    SSH_URL=ssh://$(id -un)@127.0.0.1:$SSH_PORT
    REPO_SSH=$TEST_TMP/repos/hello-ssh
    cp -r "$REPO" "$REPO_SSH"
    {
        printf '\n[targets.ssh]\nhosts = ["%s"]\n' "$SSH_URL"
        printf 'agent_command = %s\n' "$(toml_string "'$AGENT_BIN' dial-stdio --socket '$AGENT_SOCKET'")"
    } >>"$REPO_SSH/deploy.toml"
    git -C "$REPO_SSH" commit -q -am "an ssh target"
    sctl() { "$DEPLOYCTL_BIN" -C "$REPO_SSH" --no-color -t ssh --accept-new-host-key "$@"; }
    assert_exit 0 sctl deploy
    assert_exit 6 sctl run -- sh -c 'echo over-ssh; echo err-ssh >&2; exit 6'
    assert_eq "over-ssh" "$OUT" "over ssh: stdout"
    assert_eq "err-ssh" "$ERR" "over ssh: stderr"
    run bash -c "echo piped-over-ssh | \"\$@\"" _ "$DEPLOYCTL_BIN" -C "$REPO_SSH" --no-color -t ssh run -- cat
    assert_eq "piped-over-ssh" "$OUT" "over ssh: stdin and stdout"
    assert_exit 0 sctl --json run -- echo json-over-ssh
    assert_jq "$(tail -n1 "$OUT_FILE")" ".event == \"exit\" and .status == 0 and .host == \"$SSH_URL\"" "over ssh: --json exit event names the ssh:// host"
    assert_exit 0 sctl audit --json
    assert_jq "$(jq -s . <"$OUT_FILE")" \
        "any(.[]; .who == \"ssh:$(id -un)\" and .path == \"/v1/apps/hello/runs\")" \
        "audit over ssh: the run by ssh:$(id -un)"
    # deployctl killed over SSH: sshd ends dial-stdio, the agent sees the
    # connection close and ends the command.
    "$DEPLOYCTL_BIN" -C "$REPO_SSH" --no-color -t ssh run -- sleep 1019 </dev/null >/dev/null 2>&1 &
    runner=$!
    wait_until 15 pgrep -f '^sleep 1019$' >/dev/null || fail "run -- sleep 1019 over ssh started"
    kill -9 "$runner"
    wait "$runner" 2>/dev/null || true
    wait_until 5 bash -c "! pgrep -f '^sleep 1019\$' >/dev/null" ||
        fail "kill -9 of deployctl over ssh: no sleep 1019 left within 5 s" "$(pgrep -af 'sleep 1019' || true)"
    pass "kill -9 of deployctl during run over ssh: the command is gone within 5 s"
else
    log "sshd missing: the ssh:// checks are skipped"
fi

log "all $CHECKS checks passed"
