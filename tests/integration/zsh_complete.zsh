#!/usr/bin/env zsh
# zsh_complete.zsh FPATH_DIR LINE
# Prints, one per line, the words a real interactive zsh offers when TAB is
# pressed at the end of LINE, with the completion functions of FPATH_DIR
# (compinit, as a user's ~/.zshrc would). The zsh runs in a pseudo-terminal
# (zsh/zpty); a wrapper around compadd records every match the completion
# function adds, after zsh's own matching against the word being completed.
# Exit 3: zsh/zpty is missing; 4: zsh did not complete within 10 s.
zmodload zsh/zpty || { print -u2 "zsh_complete: no zsh/zpty module"; exit 3 }
emulate -L zsh
local fdir=$1 line=$2
local tmp=$(mktemp -d "${TMPDIR:-/tmp}/zsh-complete.XXXXXX")
cat >$tmp/setup.zsh <<SETUP
PROMPT='' RPROMPT='' PS2=''
unsetopt beep
fpath=(${(q)fdir} \$fpath)
autoload -Uz compinit && compinit -u -D
bindkey '^I' complete-word
zstyle ':completion:*' list-prompt ''
zstyle ':completion:*' menu no
compadd() {
    # Calls that only collect matches into arrays (-O, -A, -D) add nothing: pass them on.
    if [[ \${@[1,(i)(-|--)]} == *-(O|A|D)\\ * ]]; then
        builtin compadd "\$@"
        return
    fi
    local -a __hits
    builtin compadd -O __hits "\$@"
    (( \$#__hits )) && print -rl -- \$__hits >>${(q)tmp}/out
    builtin compadd "\$@"
}
_capture_done() { print done >${(q)tmp}/done }
comppostfuncs=(_capture_done)
print ready >${(q)tmp}/ready
SETUP
: >$tmp/out
zpty z zsh -f -i
zpty -w z "source ${(q)tmp}/setup.zsh"
local i
for i in {1..100}; do [[ -e $tmp/ready ]] && break; sleep 0.1; done
zpty -w -n z "$line"$'\t'
local rc=4
for i in {1..100}; do
    if [[ -e $tmp/done ]]; then rc=0; break; fi
    sleep 0.1
done
zpty -d z
sort -u $tmp/out
rm -rf $tmp
exit $rc
