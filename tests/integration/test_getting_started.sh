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
# The runner is guide_runner.sh.
source "$(dirname "$0")/lib.sh"
require_binaries

source "$(dirname "$0")/guide_runner.sh"

try_guide "$REPO_ROOT/docs/getting-started.md" 10

# --- the runner itself fails on a wrong line ------------------------------------------------
printf 'one\ntwo  three\n' >"$TEST_TMP/sample.out"
assert_true "the output check finds shown lines, in order, … for anything" \
    expect_lines "$TEST_TMP/sample.out" $'one\ntwo …'
assert_false "the output check fails on a line that is not there" \
    expect_lines "$TEST_TMP/sample.out" $'two three\none'
