# Runs a guide's ```console blocks verbatim (sourced by test_getting_started.sh and
# test_multihost_guide.sh, after lib.sh). The convention (CONTRIBUTING.md, "Docs that run"):
#   $ CMD        a command; a line "> MORE" right after it continues it (a heredoc, ...)
#   CMD ... &    runs in the background; the next command waits until the agent it starts
#                answers on its --listen 127.0.0.1:PORT (7070 when it names none)
#   other lines  output the command must print (stdout and stderr), in that order, each a
#                whole line; "…" stands for anything, runs of spaces compare as one
# The only change: the ports 7070-7079 (agents' APIs) and 8080-8089 (their proxies) become
# free ones. A command that exits non-zero, or output that does not show, fails with the
# guide's line.
#
#     run_guide FILE [MIN_COMMANDS]
# or, as a new user would, with guide_user and in an empty folder:
#     try_guide FILE [MIN_COMMANDS]

# What a user has: deployctl and deploy-agent on PATH (deploy-proxy beside deploy-agent),
# a git identity. No token, no host from the environment.
guide_user() {
    export PATH="$(dirname "$DEPLOYCTL_BIN"):$(dirname "$AGENT_BIN"):$PATH"
    git config --global user.name "Getting Started"
    git config --global user.email "gs@example.invalid"
    unset DEPLOYCTL_TOKEN DEPLOYCTL_HOST
}

# The ports of the guide and the free ones they become, chosen once (map_ports runs in
# subshells too).
declare -A GUIDE_PORTS=()
for guide_port in 707{0..9} 808{0..9}; do
    GUIDE_PORTS[$guide_port]=$(free_port)
done
map_ports() {
    local s=$1 p
    for p in "${!GUIDE_PORTS[@]}"; do
        s=${s//:$p/:${GUIDE_PORTS[$p]}}
    done
    printf '%s' "$s"
}
# Runs of blanks as one space, no blank at either end.
squeeze() { tr -s ' \t' '  ' | sed 's/^ //; s/ $//'; }

# expect_lines OUTPUT_FILE EXPECTED: each expected line matches a later output line.
expect_lines() {
    local out=$1 expected=$2 want pattern got=() i=0 line
    mapfile -t got < <(squeeze <"$out")
    while IFS= read -r want; do
        [[ -z $want ]] && continue
        pattern=$(map_ports "$want" | squeeze)
        # A glob: the shown text literally, "…" for anything.
        pattern=$(sed 's/[][*?\\]/\\&/g' <<<"$pattern")
        pattern=${pattern//…/*}
        while ((i < ${#got[@]})); do
            line=${got[i]}
            i=$((i + 1))
            # shellcheck disable=SC2053 # a glob on purpose
            [[ $line == $pattern ]] && continue 2
        done
        MISSING=$want
        return 1
    done <<<"$expected"
    return 0
}

# try_guide FILE [MIN_COMMANDS]: run_guide as a new user would (guide_user), in an empty
# folder of the test's own ($TEST_TMP/try), where it stays.
try_guide() {
    guide_user
    mkdir -p "$TEST_TMP/try"
    cd "$TEST_TMP/try" || fail "cd $TEST_TMP/try"
    run_guide "$@"
}

run_guide() {
    local GUIDE=$1 min=${2:-5} name
    name=$(basename "$GUIDE")
    declare -a CMD_TEXT=() CMD_LINE=() CMD_BLOCK=() CMD_EXPECT=()
    in_block=0 block_line=0 n=-1 lineno=0
    while IFS= read -r line || [[ -n $line ]]; do
        lineno=$((lineno + 1))
        if ((!in_block)); then
            [[ $line == '```console' ]] && in_block=1 block_line=$lineno
            continue
        fi
        if [[ $line == '```' ]]; then
            in_block=0
            continue
        fi
        if [[ $line == '$ '* ]]; then
            n=$((n + 1))
            CMD_TEXT[n]=${line#'$ '}
            CMD_LINE[n]=$lineno
            CMD_BLOCK[n]=$block_line
            CMD_EXPECT[n]=""
        elif ((n < 0)); then
            fail "$GUIDE:$lineno: a console block starts with a \$ command" "got: $line"
        elif [[ $line == '>' ]]; then
            CMD_TEXT[n]+=$'\n'
        elif [[ $line == '> '* ]]; then
            CMD_TEXT[n]+=$'\n'"${line#'> '}"
        elif [[ -n ${line//[[:space:]]/} ]]; then
            CMD_EXPECT[n]+="$line"$'\n'
        fi
    done <"$GUIDE"
    ((in_block == 0)) || fail "$GUIDE: every \`\`\`console block is closed" "block from line $block_line"
    ((n + 1 >= min)) || fail "$GUIDE has the guide's commands in \`\`\`console blocks" "found $((n + 1))"
    pass "read $((n + 1)) commands from $(short_cmd "$GUIDE")"

    for ((k = 0; k <= n; k++)); do
        cmd=$(map_ports "${CMD_TEXT[k]}")
        where="$name:${CMD_LINE[k]} (the block at line ${CMD_BLOCK[k]})"
        out=$TEST_TMP/cmd.$k.out
        rc=0 why="exited"
        set +eu
        if [[ $cmd == *' &' ]]; then
            # The guide goes on once the agent answers on its --listen port.
            local listen=7070
            [[ ${CMD_TEXT[k]} =~ --listen\ 127\.0\.0\.1:([0-9]+) ]] && listen=${BASH_REMATCH[1]}
            listen=$(map_ports ":$listen")
            listen=${listen#:}
            why="ran in the background, and the agent did not answer on :$listen within 20 s:"
            eval "$cmd" >"$out" 2>&1
            disown -a
            wait_until 20 curl -fsS -o /dev/null "http://127.0.0.1:$listen/v1/health" 2>/dev/null || rc=$?
        else
            eval "$cmd" >"$out" 2>&1
            rc=$?
        fi
        set -eu
        if ((rc != 0)); then
            fail "$where: \$ ${CMD_TEXT[k]}" "$why $rc" \
                "output:" "$(excerpt "$out" 30)" "$(for f in "$HOME"/*.log; do [[ -f $f ]] && excerpt "$f" 20; done)"
        fi
        MISSING=""
        if ! expect_lines "$out" "${CMD_EXPECT[k]}"; then
            fail "$where: \$ ${CMD_TEXT[k]}" "its output lacks the line the guide shows:" "  $MISSING" \
                "(in this order: ${CMD_EXPECT[k]//$'\n'/ | })" "output:" "$(excerpt "$out" 40)"
        fi
        pass "$where: \$ $(head -n1 <<<"${CMD_TEXT[k]}")"
    done
}
