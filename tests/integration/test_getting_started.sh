#!/usr/bin/env bash
# docs/getting-started.md runs as written: its ```console blocks are run in order, verbatim,
# in one shell (cd and export carry over), in a fresh HOME, against the agent the guide
# itself starts. The convention (CONTRIBUTING.md, "Docs that run"):
#   $ CMD        a command; a line "> MORE" right after it continues it (a heredoc, ...)
#   CMD ... &    runs in the background; the next command waits until 127.0.0.1:7070 answers
#   other lines  output the command must print (stdout and stderr), in that order, each a
#                whole line; "…" stands for anything, runs of spaces compare as one
# The only change: the ports 7070 (the agent's API) and 8080 (its proxy) become free ones.
# A command that exits non-zero, or output that does not show, fails with the guide's line.
source "$(dirname "$0")/lib.sh"
require_binaries

GUIDE=$REPO_ROOT/docs/getting-started.md
API_PORT=$(free_port)
WEB_PORT=$(free_port)
# What a user has: deployctl and deploy-agent on PATH (deploy-proxy beside deploy-agent),
# a git identity. No token, no host from the environment.
export PATH="$(dirname "$DEPLOYCTL_BIN"):$(dirname "$AGENT_BIN"):$PATH"
git config --global user.name "Getting Started"
git config --global user.email "gs@example.invalid"
unset DEPLOYCTL_TOKEN DEPLOYCTL_HOST
mkdir -p "$TEST_TMP/try"
cd "$TEST_TMP/try"

# The ports of the guide, made free ones.
map_ports() {
    local s=$1
    s=${s//:7070/:$API_PORT}
    s=${s//:8080/:$WEB_PORT}
    printf '%s' "$s"
}
# Runs of blanks as one space, no blank at either end.
squeeze() { tr -s ' \t' '  ' | sed 's/^ //; s/ $//'; }

# --- read the guide: commands, their continuation lines and the output shown -------------
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
((n >= 10)) || fail "$GUIDE has the guide's commands in \`\`\`console blocks" "found $((n + 1))"
pass "read $((n + 1)) commands from $(short_cmd "$GUIDE")"

# --- run them ------------------------------------------------------------------------------
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

for ((k = 0; k <= n; k++)); do
    cmd=$(map_ports "${CMD_TEXT[k]}")
    where="getting-started.md:${CMD_LINE[k]} (the block at line ${CMD_BLOCK[k]})"
    out=$TEST_TMP/cmd.$k.out
    rc=0 why="exited"
    set +eu
    if [[ $cmd == *' &' ]]; then
        why="ran in the background, and the agent did not answer on :7070 within 20 s:"
        eval "$cmd" >"$out" 2>&1
        disown -a
        # The guide goes on once the agent answers.
        wait_until 20 curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/v1/health" 2>/dev/null || rc=$?
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

# --- the runner itself fails on a wrong line ------------------------------------------------
printf 'one\ntwo  three\n' >"$TEST_TMP/sample.out"
assert_true "the output check finds shown lines, in order, … for anything" \
    expect_lines "$TEST_TMP/sample.out" $'one\ntwo …'
assert_false "the output check fails on a line that is not there" \
    expect_lines "$TEST_TMP/sample.out" $'two three\none'
