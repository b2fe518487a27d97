#!/usr/bin/env bash
# docs/multi-host.md's walkthrough runs as written: two agents on one machine, a token for
# each (DEPLOYCTL_TOKEN and deployctl login), one release id on both hosts after a deploy to
# one of them first, status in sync, a rollback refused on every host when one lacks the
# release, stop/start, destroy and deploy-agent down. Its ```console blocks run verbatim,
# in order, in a fresh HOME (guide_runner.sh; only the ports become free ones).
source "$(dirname "$0")/lib.sh"
require_binaries
source "$(dirname "$0")/guide_runner.sh"

try_guide "$REPO_ROOT/docs/multi-host.md" 15
log "all $CHECKS checks passed"
