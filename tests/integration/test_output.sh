#!/usr/bin/env bash
# Output for people and for machines: on a terminal (a real pty from script(1))
# an upload progress bar, an in-place phase line and colour; without one plain
# lines; NO_COLOR, --no-color and -q; --json with "v":1 on every line of every
# command, the error event and exit code of each failure; config errors with
# file:line:col, the line and a caret, through the deployctl binary.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v script >/dev/null || {
    log "SKIP: needs script(1) for a pty (Debian: apt-get install bsdutils)"
    exit 77
}

start_agent
# A build that takes a moment (the phase line ticks) and a blob big enough for a progress bar.
SLOW_BUILD="echo step one; sleep 0.5; echo step two; $DEFAULT_BUILD"
make_app_repo hello build="$SLOW_BUILD"
APP=hello
head -c $((8 * 1024 * 1024)) /dev/urandom >"$REPO/big.bin"
commit_change "$REPO" "Add a big file"

ESC=$'\033'
# on_tty FILE ARGS...: deployctl ARGS in a pty (script -qfec), colour allowed;
# stdout+stderr as the terminal saw them in FILE; sets RC.
on_tty() {
    local file=$1
    shift
    local cmd
    cmd=$(printf '%q ' "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" "$@")
    RC=0
    env -u NO_COLOR COLUMNS=100 script -qfec "$cmd" /dev/null </dev/null >"$file" 2>&1 || RC=$?
}
has_sgr() { grep -Eq "$ESC\[[0-9;]*m" "$1"; }

# --- on a terminal ----------------------------------------------------------------
on_tty "$TEST_TMP/tty.out" deploy
assert_eq 0 "$RC" "deploy on a tty: exit 0"
tty_out=$(cat "$TEST_TMP/tty.out")
tty_text=$(sed "s/$ESC\[[0-9;]*m//g" "$TEST_TMP/tty.out") # without colours
assert_contains "$tty_out" "Uploading [" "tty: the upload progress bar is drawn"
# The bar shows a rate after half a second; the final line always does.
assert_match "$tty_text" 'Uploaded 8\.0 MiB in [0-9.]+m?s \([0-9.]+ (B|KiB|MiB)/s\)' "tty: the upload's rate"
assert_contains "$tty_out" "ETA " "tty: the bar shows an ETA"
assert_contains "$tty_out" "${ESC}[K" "tty: the status line erases in place (ESC [ K)"
assert_contains "$tty_out" "[BUILDING]" "tty: the phase line shows BUILDING"
assert_match "$tty_out" 'QUEUED.*→.*BUILDING.*→.*PROVISIONING.*→.*PRODUCTION' "tty: the phase line shows the phases"
assert_contains "$tty_text" " build | step two" "tty: build lines are printed above the phase line"
assert_true "tty: colour escape codes" has_sgr "$TEST_TMP/tty.out"
assert_match "$tty_text" 'v1 is live at http://hello\.localhost:' "tty: the URL at the end"
last_line=$(tr -d '\r' <"$TEST_TMP/tty.out" | sed "s/$ESC\[K//g" | grep -v '^$' | tail -n1)
assert_match "$last_line" 'is live.*http://hello\.localhost' "tty: the last line is the URL line, no status line left"
assert_not_contains "$tty_text" "v1: BUILDING" "tty: no BUILDING line, the phase line shows it in place"

commit_change "$REPO" "Change for NO_COLOR" VERSION 2
RC=0
env NO_COLOR=1 script -qfec "$(printf '%q ' "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" deploy)" \
    /dev/null </dev/null >"$TEST_TMP/nocolor.out" 2>&1 || RC=$?
assert_eq 0 "$RC" "NO_COLOR deploy on a tty: exit 0"
assert_false "NO_COLOR on a tty: no colour" has_sgr "$TEST_TMP/nocolor.out"
assert_contains "$(cat "$TEST_TMP/nocolor.out")" "[BUILDING]" "NO_COLOR on a tty: the phase line is still there"

commit_change "$REPO" "Change for --no-color" VERSION 3
on_tty "$TEST_TMP/nocolor2.out" --no-color deploy
assert_eq 0 "$RC" "--no-color deploy on a tty: exit 0"
assert_false "--no-color on a tty: no colour" has_sgr "$TEST_TMP/nocolor2.out"

commit_change "$REPO" "Change for -q" VERSION 4
on_tty "$TEST_TMP/quiet.out" -q deploy
assert_eq 0 "$RC" "-q deploy on a tty: exit 0"
url=$("$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" --json status | jq -r .url)
assert_eq "$url" "$(tr -d '\r' <"$TEST_TMP/quiet.out")" "-q on a tty: only the URL"

# --- not on a terminal ------------------------------------------------------------
head -c $((2 * 1024 * 1024)) /dev/urandom >"$REPO/big.bin"
commit_change "$REPO" "New big file"
RC=0
env -u NO_COLOR "$DEPLOYCTL_BIN" -C "$REPO" --host "$AGENT_URL" deploy \
    >"$TEST_TMP/plain.out" 2>"$TEST_TMP/plain.err" || RC=$?
assert_eq 0 "$RC" "deploy without a tty: exit 0"
plain=$(cat "$TEST_TMP/plain.out" "$TEST_TMP/plain.err")
assert_not_contains "$plain" "$ESC" "no tty: no escape codes"
assert_not_contains "$plain" $'\r' "no tty: no carriage returns"
assert_eq 1 "$(grep -c '^==> Uploaded 2.0 MiB in ' "$TEST_TMP/plain.out")" "no tty: one final upload line"
assert_contains "$plain" "==> v5: BUILDING" "no tty: phases are plain lines"
assert_contains "$plain" " build | step two" "no tty: build lines"
assert_match "$plain" 'v5 is live.* at http://hello\.localhost:' "no tty: the URL"

# --- --json on every command ------------------------------------------------------
# json_ok DESCRIPTION: every line of $OUT_FILE is JSON with "v":1 (in each row of an array).
json_ok() {
    local what=$1 n=0 line
    [[ -s $OUT_FILE ]] || fail "$what: --json printed something" "stdout was empty"
    while IFS= read -r line; do
        n=$((n + 1))
        jq -e 'if type == "array" then all(.[]; .v == 1) else .v == 1 end' >/dev/null 2>&1 \
            <<<"$line" || fail "$what: line $n is JSON with \"v\":1" "line: $line" "$(excerpt "$ERR_FILE")"
    done <"$OUT_FILE"
    pass "$what: $n line(s) of JSON, each with \"v\":1"
}
# json_error DESCRIPTION CODE EXIT: the last stdout line is the error event.
json_error() {
    local last
    last=$(tail -n1 "$OUT_FILE")
    assert_jq "$last" ".event == \"error\" and .code == \"$2\" and .exit_code == $3" "$1: error event $2/$3"
}

RUN_FLAGS=(-C "$REPO" --host "$AGENT_URL" --no-color --json)
jdctl() { "$DEPLOYCTL_BIN" "${RUN_FLAGS[@]}" "$@"; }

commit_change "$REPO" "Change for --json" VERSION 6
assert_exit 0 jdctl deploy
json_ok "deploy"
assert_jq "$(jq -sc 'map(.event)' "$OUT_FILE")" 'index("package") < index("upload") and index("upload") < index("created") and .[-1] == "done"' "deploy --json: package, upload, created ... done"
assert_exit 0 jdctl status
json_ok "status"
assert_jq "$OUT" '.event == "status" and .production == "v6"' "status --json: event status, production v6"
assert_exit 0 jdctl releases
json_ok "releases"
assert_jq "$OUT" 'type == "array" and .[0].id == "v6"' "releases --json: still one array, newest first"
assert_exit 0 jdctl ps
json_ok "ps"
assert_jq "$OUT" '.event == "processes" and .release == "v6" and .processes[0].process == "web" and .processes[0].pid > 0' "ps --json: event processes, v6's web with its pid"
assert_exit 0 jdctl logs v6
json_ok "logs"
assert_exit 0 jdctl rollback
json_ok "rollback"
assert_jq "$OUT" '.event == "done" and .release == "v5" and .previous == "v6"' "rollback --json: done v5, previous v6"
assert_exit 0 jdctl rm v6
json_ok "rm"
assert_jq "$OUT" '.event == "deleted" and .release == "v6"' "rm --json: deleted v6"
assert_exit 0 jdctl env set GREETING=hi
json_ok "env set"
assert_exit 0 jdctl env ls
json_ok "env ls"
assert_exit 0 jdctl env unset GREETING
json_ok "env unset"
assert_exit 0 jdctl cron ls
json_ok "cron ls"
assert_jq "$OUT" '.event == "cron" and .app == "hello" and .jobs == []' "cron ls --json: event cron, no jobs"
assert_exit 2 jdctl cron run nightly
json_ok "cron run of an unknown job"
json_error "cron run of an unknown job" not_found 2
assert_exit 0 jdctl hooks secret
json_ok "hooks secret"
assert_jq "$OUT" '.event == "hook_secret" and (.secret | length) == 64 and .paths.github == "/v1/hooks/github/hello"' "hooks secret --json: event hook_secret, the secret, the paths"
assert_exit 0 jdctl hooks key
json_ok "hooks key"
assert_jq "$OUT" '.event == "hook_key" and (.public_key | startswith("ecdsa-sha2-nistp256 ")) and (.fingerprint | startswith("SHA256:")) and .hosts == []' "hooks key --json: event hook_key, the public key, no host trusted yet"
assert_exit 0 jdctl hooks ls
json_ok "hooks ls"
assert_jq "$OUT" '.event == "hook_deliveries" and .app == "hello" and .deliveries == []' "hooks ls --json: event hook_deliveries, none yet"
assert_exit 0 jdctl previews
json_ok "previews"
assert_jq "$OUT" '.event == "previews" and .app == "hello" and .previews == []' "previews --json: event previews, none yet"
assert_exit 0 jdctl certs
json_ok "certs"
assert_jq "$OUT" '.event == "certificates" and .acme == false and .certificates == []' "certs --json: event certificates, ACME off, none"
assert_exit 0 dctl certs
assert_contains "$OUT" "ACME is off on this agent" "certs: says ACME is off and how to turn it on"
assert_exit 0 jdctl agent ping
json_ok "agent ping"
assert_exit 0 jdctl agent info
json_ok "agent info"
assert_exit 0 jdctl agent version
json_ok "agent version"
assert_jq "$(jq -sc . "$OUT_FILE")" 'length == 2 and .[0].event == "version" and (.[0] | has("host") | not) and .[1].host == "'"$AGENT_URL"'" and .[1].version == .[0].version' \
    "agent version --json: deployctl's version, then the agent's (the same) with its host"
assert_eq "" "$ERR" "agent version: no warning when the versions match"
assert_exit 0 jdctl token create --all-apps --scope read --name output-test
json_ok "token create"
token_id=$(jq -r .id <<<"$OUT")
assert_exit 0 jdctl token ls
json_ok "token ls"
assert_exit 0 jdctl token revoke "$token_id"
json_ok "token revoke"
assert_exit 0 jdctl audit --limit 5
json_ok "audit"
assert_exit 0 "$DEPLOYCTL_BIN" --json version
json_ok "version"
assert_jq "$OUT" '.event == "version" and (.version | type == "string")' "version --json: event version"

# Failures: the error event is the last line, the exit code as docs/design.md §6 says.
assert_exit 3 "$DEPLOYCTL_BIN" --json --host "http://127.0.0.1:$(free_port)" -a hello status
json_ok "unreachable host"
json_error "unreachable host" connection 3
assert_exit 2 "$DEPLOYCTL_BIN" --json status --bogus-option
json_ok "bad option"
json_error "bad option" usage 2
assert_exit 2 jdctl logs v99
json_ok "unknown release"
json_error "unknown release" not_found 2
assert_exit 5 jdctl rm v5
json_ok "rm PRODUCTION"
json_error "rm PRODUCTION" refused 5
write_toml "$REPO" $APP build='echo about to fail; exit 3'
commit_change "$REPO" "Broken build"
assert_exit 1 jdctl deploy
json_ok "failing deploy"
json_error "failing deploy" failed 1
assert_jq "$(jq -c 'select(.event == "done")' "$OUT_FILE")" '.state == "FAILED"' "failing deploy: done FAILED before the error"

# --- exit codes in --help -----------------------------------------------------------
assert_exit 0 "$DEPLOYCTL_BIN" --help
for line in "0  success" "1  the deployment failed" "2  usage or config error" \
    "3  cannot reach or authenticate" "4  waited too long" "5  refused by a rule"; do
    assert_contains "$OUT" "$line" "--help lists exit code: $line"
done

# --- config errors through deployctl --------------------------------------------------
BAD=$TEST_TMP/bad
mkdir -p "$BAD"
# config_error DESCRIPTION TOML LOCATION MESSAGE QUOTED CARET: deploy exits 2 and stderr has
# "deploy.toml:LOCATION: MESSAGE", then the line QUOTED and the caret line CARET exactly.
config_error() {
    local what=$1
    printf '%s' "$2" >"$BAD/deploy.toml"
    assert_exit 2 "$DEPLOYCTL_BIN" -C "$BAD" --host "$AGENT_URL" deploy
    assert_contains "$ERR" "error: deploy.toml:$3: $4" "$what: file:line:col and the message"
    assert_contains "$ERR" $'\n'"$5"$'\n'"$6" "$what: the line and a caret under the spot"
    assert_eq "" "$OUT" "$what: nothing on stdout"
    assert_exit 2 "$DEPLOYCTL_BIN" -C "$BAD" --host "$AGENT_URL" --json deploy
    json_error "$what (--json)" config 2
    assert_jq "$(tail -n1 "$OUT_FILE")" ".message | startswith(\"deploy.toml:$3: \")" "$what (--json): the message has file:line:col"
}
config_error "syntax error" $'app = "hello"\n[run]\nport = 3000 junk\n' \
    "3:13" "Error while parsing" "  3 | port = 3000 junk" "    |             ^"
config_error "wrong type" $'app = "hello"\n[run]\nport = "3000"\n' \
    "3:8" "run.port must be an integer from 1 to 65535" '  3 | port = "3000"' "    |        ^"
config_error "bad duration" $'app = "hello"\n[deploy]\ndrain = "10 parsecs"\n' \
    "3:9" "deploy.drain: invalid duration" '  3 | drain = "10 parsecs"' "    |         ^"
config_error "bad size" $'app = "hello"\n[run]\nmemory = "lots"\n' \
    "3:10" "run.memory: invalid size" '  3 | memory = "lots"' "    |          ^"
config_error "unknown key in [run]" $'app = "hello"\n[run]\nprot = 3000\n' \
    "3:1" "unknown key 'prot' in [run]; did you mean 'port'?" "  3 | prot = 3000" "    | ^"
config_error "unknown key in the health table" \
    $'app = "hello"\n[run]\nhealth = { path = "/", intervl = "1s" }\n' \
    "3:24" "unknown key 'intervl' in run.health; did you mean 'interval'?" \
    '  3 | health = { path = "/", intervl = "1s" }' "    |                        ^"
config_error "unknown key in a target" \
    $'app = "hello"\n\n[targets.production]\n  hots = ["http://127.0.0.1:1"]\n' \
    "4:3" "unknown key 'hots' in [targets.production]; did you mean 'hosts'?" \
    '  4 |   hots = ["http://127.0.0.1:1"]' "    |   ^"
config_error "unknown table" $'app = "hello"\n[biuld]\n' \
    "2:2" "unknown key 'biuld' in the top level; did you mean 'build'?" "  2 | [biuld]" "    |  ^"
config_error "bad value" $'app = "Hello World"\n' \
    "1:7" "app must be 1-63 lower-case letters" '  1 | app = "Hello World"' "    |       ^"

log "all $CHECKS checks passed"
