#!/usr/bin/env bash
# The docs match the code: every key common/config.cpp accepts is in
# docs/deploy-toml.md with its type and default; every command and option of
# `deployctl --help` (and of each command's --help) is in deployctl(1), those
# of deploy-agent in deploy-agent(8); both man pages render without warnings.
source "$(dirname "$0")/lib.sh"
require_binaries
for tool in man groff perl col; do
    command -v "$tool" >/dev/null || {
        log "SKIP: needs $tool on PATH (Debian: apt-get install man-db groff-base perl bsdextrautils)"
        exit 77
    }
done

# --- deploy.toml: every accepted key, with a type and a default -------------------------
# "SECTION<TAB>KEY" for every r.check_keys(table, "SECTION", {"key", ...}) in FILE;
# a section built at run time ("[targets." + target.name + "]") reads [targets.NAME].
accepted_keys() {
    perl -0777 -ne '
        while (/check_keys\(\s*[^,]+,\s*((?:"[^"]*"|[^,{])+?),\s*\{([^}]*)\}/g) {
            my ($section, $list) = ($1, $2);
            $section =~ s/"\s*\+\s*[\w.]+\s*\+\s*"/NAME/g;
            $section =~ s/^\s*"|"\s*$//g;
            print "$section\t$1\n" while $list =~ /"([^"]+)"/g;
        }' "$1"
}
# The table row of docs/deploy-toml.md for a key, e.g. `[run] health.path`.
DOC=$REPO_ROOT/docs/deploy-toml.md
doc_row() {
    local section=$1 key=$2 needle
    case $section in
    "the top level") needle="\`$key\`" ;;
    \[*) needle="\`$section $key\`" ;;
    *.*) needle="\`[${section%%.*}] ${section#*.}.$key\`" ;;
    *) needle="\`[$section] $key\`" ;;
    esac
    # A table key ([run] health) is documented by the rows of its keys ([run] health.path).
    { grep -F -- "| $needle" "$DOC" || grep -F -- "| ${needle%\`}." "$DOC" || true; } | head -n1
}
accepted_keys "$REPO_ROOT/common/config.cpp" >"$TEST_TMP/keys"
n_keys=$(wc -l <"$TEST_TMP/keys")
((n_keys >= 25)) || fail "found the accepted keys in common/config.cpp" "only $n_keys: did check_keys change?" "$(cat "$TEST_TMP/keys")"
pass "common/config.cpp accepts $n_keys keys"
missing=()
while IFS=$'\t' read -r section key; do
    if [[ $section == "the top level" ]]; then
        # app is a key of its own; build, run, ... are sections and cron an array of
        # tables ([[cron]]): any row of theirs will do.
        grep -qE -- "^\| \`($key|\[$key\]|\[$key\..*\]|\[\[$key\]\])( |\`)" "$DOC" || missing+=("$key (top level)")
        continue
    fi
    row=$(doc_row "$section" "$key")
    if [[ -z $row ]]; then
        missing+=("$section $key")
        continue
    fi
    IFS='|' read -r _ _ type default _ <<<"$row"
    [[ -n ${type// /} && -n ${default// /} ]] || missing+=("$section $key: type '$type', default '$default'")
done <"$TEST_TMP/keys"
if ((${#missing[@]})); then
    fail "every key of common/config.cpp is in docs/deploy-toml.md with a type and a default" "${missing[@]}"
fi
pass "all $n_keys keys documented in docs/deploy-toml.md, each with a type and a default"

# The check itself fails for an undocumented key.
printf 'r.check_keys(t, "[deploy]", {"keep", "surely_not_documented"});\n' >"$TEST_TMP/fake.cpp"
assert_eq "$(printf '[deploy]\tkeep\n[deploy]\tsurely_not_documented')" "$(accepted_keys "$TEST_TMP/fake.cpp")" \
    "the key extraction reads a check_keys call"
assert_eq "" "$(doc_row "[deploy]" surely_not_documented)" "an undocumented key has no row"

# --- man pages: render without warnings ----------------------------------------------
render() { # PAGE: the page as plain text, 200 columns
    MANWIDTH=200 MAN_KEEP_FORMATTING=0 LC_ALL=C.UTF-8 man --warnings -l "$1" 2>"$TEST_TMP/man.err" | col -b
}
for page in deployctl.1 deploy-agent.8; do
    file=$REPO_ROOT/docs/man/$page
    render "$file" >"$TEST_TMP/$page.txt"
    assert_eq "" "$(cat "$TEST_TMP/man.err")" "man -l $page: no warnings"
    assert_eq "" "$(groff -man -Tutf8 -ww -z "$file" 2>&1)" "groff -ww $page: no warnings"
    assert_match "$(head -n 5 "$TEST_TMP/$page.txt")" "^(DEPLOYCTL\(1\)|DEPLOY-AGENT\(8\))" "$page renders with its title"
done

# --- docs match --help ---------------------------------------------------------------
# "flag X" and "cmd X" for the options and subcommands one --help lists.
help_items() {
    "$@" --help | awk '
        /^Options:/ { mode = "o"; next }
        /^Subcommands:/ { mode = "s"; next }
        /^[^ ]/ { mode = ""; next }
        mode == "o" && /^  -/ { n = split($1, names, ","); for (i = 1; i <= n; i++) print "flag " names[i] }
        mode == "s" && /^  [a-z]/ { print "cmd " $1 }'
}
# The COMMANDS section of a rendered page.
commands_section() { awk '/^COMMANDS/ { on = 1; next } /^[A-Z]/ { on = 0 } on' "$1"; }
has_flag() { grep -qE -- "(^|[^-[:alnum:]])$1([^-[:alnum:]]|$)" "$2"; }
# has_command TEXT "env set": a tag line of the COMMANDS section starts with it.
# (grep reads all of its input: with -q it could stop early, awk would die of SIGPIPE
# and pipefail would turn a match into a miss.)
has_command() { commands_section "$2" | grep -E "^ {7}$1( |$)" >/dev/null; }

check_page() { # PAGE BINARY: every flag and (nested) command of BINARY's --help is in PAGE
    local page=$1 bin=$2 kind name sub flag missing=() checked=0
    local text=$TEST_TMP/$page.txt
    while read -r kind name; do
        checked=$((checked + 1))
        if [[ $kind == flag ]]; then
            has_flag "$name" "$text" || missing+=("option $name (--help)")
            continue
        fi
        has_command "$name" "$text" || missing+=("command $name")
        while read -r kind sub; do
            checked=$((checked + 1))
            if [[ $kind == flag ]]; then
                has_flag "$sub" "$text" || missing+=("option $sub ($name --help)")
            else
                has_command "$name $sub" "$text" || missing+=("command $name $sub")
                while read -r kind flag; do
                    checked=$((checked + 1))
                    has_flag "$flag" "$text" || missing+=("option $flag ($name $sub --help)")
                done < <(help_items "$bin" "$name" "$sub" | grep '^flag ')
            fi
        done < <(help_items "$bin" "$name")
    done < <(help_items "$bin")
    ((checked >= 10)) || fail "$page: read $(basename "$bin") --help" "only $checked items found"
    if ((${#missing[@]})); then
        fail "every command and option of $(basename "$bin") --help is in $page" "${missing[@]}"
    fi
    pass "$page documents all $checked commands and options of $(basename "$bin") --help"
}
check_page deployctl.1 "$DEPLOYCTL_BIN"
check_page deploy-agent.8 "$AGENT_BIN"

# The check fails for a command the page lacks.
sed '/^COMMANDS/,/^EXIT/{/^ \{7\}rollback/d}' "$TEST_TMP/deployctl.1.txt" >"$TEST_TMP/broken.txt"
assert_false "a page without rollback fails the check" has_command rollback "$TEST_TMP/broken.txt"

# --- the other docs name what they must ----------------------------------------------
GS=$(cat "$REPO_ROOT/docs/getting-started.md")
assert_contains "$GS" "deployctl init" "getting-started.md starts with deployctl init"
assert_contains "$GS" "deployctl completion" "getting-started.md shows completions"
CI=$(cat "$REPO_ROOT/docs/ci.md")
for word in "GitHub Actions" "GitLab CI" "--json" "DEPLOYCTL_TOKEN" "| 5 |"; do
    assert_contains "$CI" "$word" "ci.md: $word"
done
assert_true "agent-setup.md points at the shipped unit" grep -q "packaging/deploy-agent.service" "$REPO_ROOT/docs/agent-setup.md"
