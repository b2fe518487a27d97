#!/usr/bin/env bash
# `deployctl completion bash|zsh|fish`: each script is loaded in the real shell
# and asked to complete: commands, nested commands, options, option values,
# target names from a deploy.toml (`__complete targets`) and release ids from
# a real agent (`__complete releases`). The scripts in completions/ are what
# `deployctl completion` prints.
source "$(dirname "$0")/lib.sh"
require_binaries
for shell in bash zsh fish; do
    command -v "$shell" >/dev/null || {
        log "SKIP: needs $shell on PATH (Debian: apt-get install bash zsh fish; scripts/deps)"
        exit 77
    }
done

# `deployctl` on PATH, as users have it.
mkdir -p "$TEST_TMP/bin" "$TEST_TMP/scripts/zsh"
ln -s "$DEPLOYCTL_BIN" "$TEST_TMP/bin/deployctl"
export PATH=$TEST_TMP/bin:$PATH

# --- the scripts -----------------------------------------------------------------
for shell in bash zsh fish; do
    assert_exit 0 deployctl completion $shell
    assert_eq "" "$ERR" "completion $shell: nothing on stderr"
done
deployctl completion bash >"$TEST_TMP/scripts/deployctl.bash"
deployctl completion zsh >"$TEST_TMP/scripts/zsh/_deployctl"
deployctl completion fish >"$TEST_TMP/scripts/deployctl.fish"
assert_eq "#compdef deployctl" "$(head -n1 "$TEST_TMP/scripts/zsh/_deployctl")" "zsh: an autoloadable #compdef file"
assert_exit 2 deployctl completion tcsh
assert_contains "$ERR" "tcsh" "completion of an unknown shell: a usage error naming it"
run deployctl --json completion fish
assert_jq "$OUT" '.event == "completion" and .shell == "fish" and (.script | startswith("# fish completion")) and .v == 1' \
    "completion --json: one completion event with the script"
assert_eq 1 "$(printf '%s\n' "$OUT" | wc -l)" "completion --json: one line"

# The checked-in copies are the generated ones (regenerate: ninja -C build update-completions).
for pair in bash:deployctl.bash zsh:_deployctl fish:deployctl.fish; do
    shell=${pair%%:*} file=$REPO_ROOT/completions/${pair#*:}
    if diff -u "$file" <(deployctl completion "$shell") >"$TEST_TMP/diff"; then
        pass "completions/${pair#*:} equals \`deployctl completion $shell\`"
    else
        fail "completions/${pair#*:} equals \`deployctl completion $shell\`" \
            "run: ninja -C build update-completions" "$(head -n 30 "$TEST_TMP/diff")"
    fi
done

# The hidden helper is not in --help, nor completed.
run deployctl --help
assert_not_contains "$OUT" "__complete" "--help does not show __complete"
assert_contains "$OUT" "completion" "--help shows completion"

# --- the shells ----------------------------------------------------------------------
# Each prints the candidates for a command line whose last word is being completed
# (an empty last word: TAB after a space), one per line, sorted.
bash_complete() {
    env -i PATH="$PATH" HOME="$HOME" bash --norc --noprofile -c '
        source "$1"
        shift
        COMP_WORDS=("$@")
        COMP_CWORD=$(($# - 1))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        _deployctl deployctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf "%s\n" "${COMPREPLY[@]}"' _ "$TEST_TMP/scripts/deployctl.bash" "$@" | sort -u
}
zsh_complete() {
    local line=$*
    env -i PATH="$PATH" HOME="$HOME" TERM=dumb zsh -f "$IT_DIR/zsh_complete.zsh" "$TEST_TMP/scripts/zsh" "$line"
}
fish_complete() {
    local line=$*
    env -i PATH="$PATH" HOME="$HOME" \
        fish --no-config -c 'source $argv[1]; complete -C $argv[2]' "$TEST_TMP/scripts/deployctl.fish" "$line" |
        cut -f1 | sort -u
}
# expect SHELL "LINE" WORD...: every WORD is among the candidates
expect() {
    local shell=$1 line=$2 got word
    shift 2
    if [[ $shell == bash ]]; then
        local -a words
        read -ra words <<<"$line"
        [[ $line == *" " ]] && words+=("")
        got=$(bash_complete "${words[@]}")
    else
        got=$("${shell}_complete" "$line")
    fi
    for word in "$@"; do
        if ! grep -qxF -- "$word" <<<"$got"; then
            fail "$shell: '$line<TAB>' offers $*" "missing: $word" "got: $(paste -sd' ' <<<"$got")"
        fi
    done
    pass "$shell: '$line<TAB>' offers $*"
    LAST=$got
}
# expect_only SHELL "LINE" WORD...: the candidates are exactly the WORDs
expect_only() {
    local shell=$1 line=$2
    shift 2
    expect "$shell" "$line" "$@"
    assert_eq "$(printf '%s\n' "$@" | sort -u)" "$LAST" "$shell: '$line<TAB>' offers nothing else"
}

# A folder with a deploy.toml of three targets, and one elsewhere reached with -C.
APPDIR=$TEST_TMP/app
mkdir -p "$APPDIR" "$TEST_TMP/other"
cat >"$APPDIR/deploy.toml" <<'TOML'
app = "shop"
[targets.production]
hosts = ["https://web1.example.com:7443"]
[targets.staging]
hosts = ["https://staging.example.com:7443"]
[targets.lab-eu]
hosts = ["ssh://deploy@lab"]
TOML
cat >"$TEST_TMP/other/deploy.toml" <<'TOML'
app = "other"
[targets.canary]
hosts = ["http://127.0.0.1:1"]
TOML
cd "$APPDIR"
assert_eq "$(printf 'lab-eu\nproduction\nstaging')" "$(deployctl __complete targets)" "__complete targets lists deploy.toml's targets"
assert_eq "canary" "$(deployctl -C ../other __complete targets)" "__complete targets reads -C DIR's deploy.toml"

for shell in bash zsh fish; do
    expect "$shell" "deployctl de" deploy
    expect "$shell" "deployctl " deploy status releases logs run rollback rm agent env token audit completion version
    if grep -qx __complete <<<"$LAST"; then fail "$shell: __complete is not offered"; fi
    expect_only "$shell" "deployctl env " ls set unset
    expect_only "$shell" "deployctl token " create ls revoke
    expect_only "$shell" "deployctl agent " ping info version df prune install upgrade
    expect_only "$shell" "deployctl token create --sc" --scope
    expect_only "$shell" "deployctl token create --scope " read deploy admin
    expect "$shell" "deployctl deploy --" --no-follow --dirty --json --host --target --help
    expect "$shell" "deployctl --no-" --no-color
    expect_only "$shell" "deployctl completion " bash zsh fish
    expect_only "$shell" "deployctl -t " production staging lab-eu
    expect_only "$shell" "deployctl deploy --target st" staging
    expect_only "$shell" "deployctl -C $TEST_TMP/other status -t " canary
done

# --- release ids from a real agent ---------------------------------------------------------
start_agent
make_app_repo hello
assert_exit 0 dctl deploy
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dctl deploy
unset DEPLOYCTL_TOKEN # the shells find the token in the credentials file, as a user's would
assert_eq "$(printf 'v2\nv1')" "$(deployctl -C "$REPO" __complete releases)" "__complete releases: the agent's release ids"
for shell in bash zsh fish; do
    expect_only "$shell" "deployctl -C $REPO logs " v1 v2
    expect_only "$shell" "deployctl rollback -C $REPO v" v1 v2
    expect_only "$shell" "deployctl --host $AGENT_URL -a hello rm " v1 v2
done

# An agent that does not answer, or answers nothing: no words, no message, about a second.
SILENT_PORT=$(free_port)
# It accepts the connection and never answers (perl-base: on every Debian).
perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
    Listen => 5, ReuseAddr => 1) or die; $c = $s->accept; sleep 30' "$SILENT_PORT" </dev/null >/dev/null 2>&1 &
SILENT_PID=$!
wait_until 5 port_in_use "$SILENT_PORT" || fail "a silent listener on :$SILENT_PORT"
start=$(date +%s%N)
run deployctl --host "http://127.0.0.1:$SILENT_PORT" -a hello __complete releases
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
assert_eq "0::" "$RC:$OUT:$ERR" "__complete releases from a silent agent: nothing, exit 0"
if ((elapsed_ms < 3000)); then pass "gave up after ${elapsed_ms} ms (< 3 s)"; else fail "gave up within 3 s" "took ${elapsed_ms} ms"; fi
run deployctl --host "http://127.0.0.1:1" -a hello __complete releases
assert_eq "0::" "$RC:$OUT:$ERR" "__complete releases from a closed port: nothing, exit 0"
expect_only bash "deployctl --host http://127.0.0.1:1 -a hello logs "
kill "$SILENT_PID" 2>/dev/null || true
wait "$SILENT_PID" 2>/dev/null || true
