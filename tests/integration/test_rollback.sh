#!/usr/bin/env bash
# Rollback promotes an INACTIVE release; PRODUCTION cannot be removed; an
# INACTIVE release can, and its files go with it.
source "$(dirname "$0")/lib.sh"
require_binaries

start_and_deploy_hello
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dctl deploy
expect_serving $APP "hello from 2" "v2 served"

releases() { dctl --json releases | jq -r '.[] | "\(.id)=\(.state)"' | paste -sd' '; }
assert_eq "v2=PRODUCTION v1=INACTIVE" "$(releases)" "before rollback"

# --- rollback to the previous one -------------------------------------------------
assert_exit 0 dctl rollback
expect_serving $APP "hello from 1" "after rollback: v1 text served"
assert_eq "v2=INACTIVE v1=PRODUCTION" "$(releases)" "after rollback: v1 PRODUCTION, v2 INACTIVE"
assert_eq v1 "$(dctl --json status | jq -r .production)" "status: production == v1"
assert_eq 1 "$(sqlite3 "$DATA/state.db" "select count(*) from releases where app='hello' and state='PRODUCTION'")" \
    "state.db: exactly one PRODUCTION"

# --- rollback to a named release -------------------------------------------------
assert_exit 0 dctl rollback v2
expect_serving $APP "hello from 2" "after rollback v2: v2 text served"
assert_eq "v2=PRODUCTION v1=INACTIVE" "$(releases)" "after rollback v2: v2 PRODUCTION, v1 INACTIVE"

# Rolling back to a release that does not exist is a usage error (not_found).
assert_exit 2 dctl rollback v9
assert_contains "$ERR" "v9" "the error names v9"
expect_serving $APP "hello from 2" "failed rollback changed nothing"

# --- rm of PRODUCTION is refused --------------------------------------------------
assert_exit 5 dctl rm v2
assert_contains "$ERR" "v2" "refusal names the release"
assert_match "$ERR" "production" "refusal says why (PRODUCTION)"
assert_eq "v2=PRODUCTION v1=INACTIVE" "$(releases)" "after refused rm: both releases still there"
assert_true "v2 dir still there" test -d "$(release_dir $APP v2)"
expect_serving $APP "hello from 2" "after refused rm: still serving v2"

# --- rm of an INACTIVE release ----------------------------------------------------
v1_dir=$(release_dir $APP v1)
assert_true "v1 dir exists before rm" test -d "$v1_dir"
assert_exit 0 dctl rm v1
assert_eq "v2=PRODUCTION" "$(releases)" "v1 gone from releases"
assert_false "v1 dir removed" test -e "$v1_dir"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "select count(*) from releases where app='hello' and id='v1'")" \
    "state.db: v1 row gone"
expect_serving $APP "hello from 2" "after rm v1: still serving v2"

run acurl -s -o /dev/null -w "%{http_code}" "$AGENT_URL/v1/apps/hello/releases/v1"
assert_eq 404 "$OUT" "API: GET v1 is 404 after rm"
assert_exit 2 dctl rm v1
assert_exit 2 dctl rollback v1
