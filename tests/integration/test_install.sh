#!/usr/bin/env bash
# `cmake --install` of this build tree into a temporary prefix installs the
# binaries, the man pages, the completion scripts, the systemd unit and the
# fail2ban filter and jail, and each works from there.
source "$(dirname "$0")/lib.sh"
require_binaries
BUILD_DIR=${BUILD_DIR:-$REPO_ROOT/build}
[[ -f $BUILD_DIR/cmake_install.cmake ]] || fail "a configured build tree at $BUILD_DIR" "set BUILD_DIR"
command -v man >/dev/null || { log "SKIP: needs man (Debian: apt-get install man-db)"; exit 77; }

PREFIX=$TEST_TMP/prefix
assert_exit 0 cmake --install "$BUILD_DIR" --prefix "$PREFIX"
for file in bin/deployctl bin/deploy-agent bin/deploy-proxy \
    share/man/man1/deployctl.1 share/man/man8/deploy-agent.8 \
    share/bash-completion/completions/deployctl share/zsh/site-functions/_deployctl \
    share/fish/vendor_completions.d/deployctl.fish lib/systemd/system/deploy-agent.service \
    share/deploy-agent/fail2ban/filter.d/deploy-agent.conf \
    share/deploy-agent/fail2ban/jail.d/deploy-agent.conf; do
    assert_true "installed $file" test -s "$PREFIX/$file"
done

# The binaries run from the prefix.
assert_exit 0 "$PREFIX/bin/deployctl" --version
assert_contains "$OUT" "deployctl" "installed deployctl --version"
assert_exit 0 "$PREFIX/bin/deploy-agent" version

# man finds and renders the pages from the prefix.
export MANPATH=$PREFIX/share/man
for page in 1:deployctl 8:deploy-agent; do
    run man -w "${page%%:*}" "${page#*:}"
    assert_eq "$PREFIX/share/man/man${page%%:*}/${page#*:}.${page%%:*}" "$OUT" "man -w finds ${page#*:}(${page%%:*}) in the prefix"
    run env MANWIDTH=100 man --warnings -l "$OUT"
    assert_eq "0:" "$RC:$ERR" "man -l ${page#*:}: renders without warnings"
    assert_contains "$OUT" "SYNOPSIS" "man ${page#*:}: has a SYNOPSIS"
done

# The completion scripts are the installed deployctl's own.
assert_eq "$("$PREFIX/bin/deployctl" completion bash)" "$(cat "$PREFIX/share/bash-completion/completions/deployctl")" \
    "installed bash completion == deployctl completion bash"
assert_eq "$("$PREFIX/bin/deployctl" completion zsh)" "$(cat "$PREFIX/share/zsh/site-functions/_deployctl")" \
    "installed zsh completion == deployctl completion zsh"
assert_eq "$("$PREFIX/bin/deployctl" completion fish)" "$(cat "$PREFIX/share/fish/vendor_completions.d/deployctl.fish")" \
    "installed fish completion == deployctl completion fish"

# The unit starts the installed agent, and systemd accepts it.
UNIT=$PREFIX/lib/systemd/system/deploy-agent.service
assert_match "$(grep '^ExecStart=' "$UNIT")" "^ExecStart=$PREFIX/bin/deploy-agent serve " "unit: ExecStart is the prefix's deploy-agent"
for setting in KillMode=process RuntimeDirectory=deploy-agent StateDirectory=deploy-agent \
    NoNewPrivileges=yes ProtectSystem=strict; do
    assert_true "unit: $setting" grep -qx "$setting" "$UNIT"
done
if command -v systemd-analyze >/dev/null; then
    run systemd-analyze verify "$UNIT"
    assert_eq "0:" "$RC:$OUT$ERR" "systemd-analyze verify deploy-agent.service: no complaints"
else
    log "systemd-analyze not installed: the unit's syntax is not verified"
fi
