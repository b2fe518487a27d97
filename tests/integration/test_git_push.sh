#!/usr/bin/env bash
# git push to the agent (docs/git.md) with real parts: OpenSSH's sshd with the forced
# command `deploy-agent keys add` writes, git's own client and receive-pack. A push of the
# deploy branch deploys and the pusher sees it live as "remote:" lines; a failing build
# rejects the push (the branch does not move, the serving release keeps serving); other
# branches and tags are kept, not deployed; a key scoped to another app, a fetch and a
# removed key are refused; an unchanged tree deploys nothing; the audit log names the key.
source "$(dirname "$0")/lib.sh"
require_binaries

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}
require_tools "openssh-server openssh-client git" "$SSHD_BIN" ssh ssh-keygen git

SSH_USER=$(id -un)
SSHD_DIR=$TEST_TMP/sshd
KEYS=$SSHD_DIR/authorized_keys
mkdir -p "$SSHD_DIR"
ssh-keygen -q -t ed25519 -N '' -C it-host -f "$SSHD_DIR/host_key"
for who in alice bob carol; do ssh-keygen -q -t ed25519 -N '' -C "it-$who" -f "$SSHD_DIR/$who"; done
: >"$KEYS"
at_exit stop_sshds

start_agent
start_sshd main "$SSHD_DIR/host_key"
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SSHD_DIR/host_key.pub")" >"$SSHD_DIR/known_hosts"
REMOTE=ssh://$SSH_USER@127.0.0.1:$SSH_PORT
# as_key NAME CMD...: CMD with git's ssh logging in with NAME's key only.
as_key() {
    GIT_SSH_COMMAND="ssh -i $SSHD_DIR/$1 -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=$SSHD_DIR/known_hosts -o StrictHostKeyChecking=yes" \
        "${@:2}"
}
keys() { "$AGENT_BIN" keys "$@" --file "$KEYS"; }
agent_ref() { git --git-dir "$DATA/git/$1.git" rev-parse --verify -q "refs/heads/$2" || true; }
release_count() { sqlite3 "$DATA/state.db" "select count(*) from releases where app='$1'"; }

# --- keys add, ls, rm ------------------------------------------------------------------
assert_exit 0 keys add alice --app hello --socket "$AGENT_SOCKET" --key-file "$SSHD_DIR/alice.pub"
assert_contains "$OUT" 'added key "alice"' "keys add: says what it added"
assert_exit 0 keys add bob --app other --socket "$AGENT_SOCKET" <"$SSHD_DIR/bob.pub"
assert_exit 0 keys add carol --all-apps --socket "$AGENT_SOCKET" --key-file "$SSHD_DIR/carol.pub"
assert_match "$(head -1 "$KEYS")" '^restrict,command=".*git-receive --key alice --app hello --socket .*" ssh-ed25519 ' \
    "keys add: a restricted line whose forced command is git-receive for the key's apps"
assert_eq 600 "$(stat -c %a "$KEYS")" "authorized_keys stays 0600"
assert_exit 0 keys ls
ALICE_FP=$(ssh-keygen -l -E sha256 -f "$SSHD_DIR/alice.pub" | awk '{print $2}')
assert_match "$OUT" "alice +${ALICE_FP//+/[+]} +hello" "keys ls: alice, her fingerprint as ssh-keygen prints it, her app"
assert_match "$OUT" "carol +SHA256:[^ ]+ +every app" "keys ls: carol may push to every app"
assert_exit 0 keys ls --json
assert_eq '["alice","hello"]' "$(jq -c 'select(.name=="alice") | [.name, .apps[0]]' <<<"$OUT")" "keys ls --json"
assert_exit 1 keys add alice --app hello --key-file "$SSHD_DIR/alice.pub"
assert_contains "$ERR" 'already has a key named "alice"' "keys add: a name taken is refused"
assert_exit 1 keys add alice2 --app hello --key-file "$SSHD_DIR/alice.pub"
assert_contains "$ERR" "is already in" "keys add: the same key twice is refused (sshd would use the first line)"
assert_exit 1 keys add dave --app hello --key-file "$SSHD_DIR/alice"
assert_contains "$ERR" "not a public key" "keys add: a private key file is refused"
assert_exit 1 keys add dave --key-file "$SSHD_DIR/alice.pub"
assert_contains "$ERR" "--all-apps" "keys add: the apps must be said"
assert_eq 3 "$(grep -c git-receive "$KEYS")" "refused adds changed nothing"

# --- the first push deploys, live -----------------------------------------------------
make_app_repo hello
APP=hello
git -C "$REPO" remote add agent "$REMOTE/hello"
START=$(date +%s%N)
assert_exit 0 as_key alice git -C "$REPO" push agent main
PUSH_MS=$(( ($(date +%s%N) - START) / 1000000 ))
assert_contains "$ERR" "remote: -----> v1 BUILDING" "push: the pusher sees the release's states as remote: lines"
assert_contains "$ERR" "remote: -----> v1 is live" "push: and that it went live"
assert_contains "$ERR" "main -> main" "push: the branch moved"
expect_serving hello "hello from 1" "push: v1 served through the proxy"
assert_eq "$(git -C "$REPO" rev-parse HEAD)" "$(agent_ref hello main)" "push: the agent's repository has the commit"
assert_eq "$(git -C "$REPO" rev-parse HEAD)" "$(sqlite3 "$DATA/state.db" "select \"commit\" from releases where app='hello' and id='v1'")" \
    "push: the release records the pushed commit"
log "git push to serving v1: ${PUSH_MS} ms; the pusher saw:"; printf "%s\n" "$ERR" | sed "s/^/    /"

# --- a change deploys; deployctl sees the same app --------------------------------------
commit_change "$REPO" "Version 2" VERSION 2
START=$(date +%s%N)
assert_exit 0 as_key alice git -C "$REPO" push agent main
PUSH2_MS=$(( ($(date +%s%N) - START) / 1000000 ))
expect_serving hello "hello from 2" "second push: v2 served"
assert_exit 0 dctl status
assert_contains "$OUT" "v2" "deployctl status shows the pushed release"
log "git push of a one-file change to serving v2: ${PUSH2_MS} ms"

# --- an unchanged tree deploys nothing -------------------------------------------------
git -C "$REPO" commit -q --allow-empty -m "Nothing changed"
assert_exit 0 as_key alice git -C "$REPO" push agent main
assert_contains "$ERR" "already serves this tree" "unchanged push: says nothing was deployed"
assert_eq 2 "$(release_count hello)" "unchanged push: no release"

# --- a failing build rejects the push; the serving release keeps serving ---------------
BEFORE=$(agent_ref hello main)
write_toml "$REPO" hello build='echo compiling; echo "error: it does not build" >&2; exit 3'
commit_change "$REPO" "Broken build" VERSION 3
assert_exit 1 as_key alice git -C "$REPO" push agent main
assert_contains "$ERR" "remote:        error: it does not build" "failed build: its output reached the pusher"
assert_contains "$ERR" "FAILED" "failed build: the release failed"
assert_contains "$ERR" "pre-receive hook declined" "failed build: git says the push was declined"
assert_eq "$BEFORE" "$(agent_ref hello main)" "failed build: the branch did not move"
expect_serving hello "hello from 2" "failed build: v2 still serves"

# --- a broken deploy.toml rejects the push with its error ------------------------------
printf 'app = "hello"\n[build]\ncomand = "true"\n' >"$REPO/deploy.toml"
commit_change "$REPO" "Typo"
assert_exit 1 as_key alice git -C "$REPO" push agent main
assert_contains "$ERR" "command" "bad deploy.toml: the pusher sees the error (did you mean)"
assert_eq "$BEFORE" "$(agent_ref hello main)" "bad deploy.toml: the branch did not move"
git -C "$REPO" reset -q --hard HEAD~2
write_toml "$REPO" hello
commit_change "$REPO" "Version 4" VERSION 4

# --- other branches and tags are kept, not deployed ------------------------------------
git -C "$REPO" checkout -q -b feature
commit_change "$REPO" "Feature" VERSION feature
COUNT=$(release_count hello)
assert_exit 0 as_key alice git -C "$REPO" push agent feature
assert_contains "$ERR" "branch feature: kept, not deployed" "other branch: accepted and not deployed"
assert_eq "$COUNT" "$(release_count hello)" "other branch: no release"
assert_eq "$(git -C "$REPO" rev-parse feature)" "$(agent_ref hello feature)" "other branch: stored"
git -C "$REPO" checkout -q main
git -C "$REPO" tag v-four
assert_exit 0 as_key alice git -C "$REPO" push agent v-four
assert_contains "$ERR" "refs/tags/v-four: kept, not deployed" "a tag: accepted and not deployed"
expect_serving hello "hello from 2" "branches and tags: v2 still serves"

# --- scope: a key for another app, a key for all, a fetch, a removed key ---------------
assert_exit 128 as_key bob git -C "$REPO" push agent main
assert_contains "$ERR" 'the key "bob" may push to other only, not to hello' "bob (app other) may not push to hello"
assert_eq "$BEFORE" "$(agent_ref hello main)" "bob's push changed nothing"
assert_exit 128 as_key alice git ls-remote "$REMOTE/hello"
assert_contains "$ERR" "may only push" "a fetch with a push key is refused"
assert_exit 0 as_key carol git -C "$REPO" push agent main
expect_serving hello "hello from 4" "carol (every app) pushed v4"
assert_exit 0 keys rm alice
assert_not_contains "$(cat "$KEYS")" "--key alice" "keys rm: alice's line is gone"
commit_change "$REPO" "Version 5" VERSION 5
assert_exit 128 as_key alice git -C "$REPO" push agent main
assert_contains "$ERR" "Permission denied" "a removed key cannot push"
assert_exit 1 keys rm alice
assert_contains "$ERR" 'no push key named "alice"' "keys rm: an unknown name is an error"

# --- the audit log names the key -------------------------------------------------------
AUDIT=$(sqlite3 "$DATA/state.db" "select command from api_audit where path like '%/git/pre-receive'")
assert_contains "$AUDIT" "git push with key alice: main" "audit: the push's deploy names the key and branch"
assert_contains "$AUDIT" "git push with key carol: main" "audit: carol's too"

# --- [git] branch: another branch deploys ----------------------------------------------
printf '\n[git]\nbranch = "production"\n' >>"$REPO/deploy.toml"
commit_change "$REPO" "Deploy from production" VERSION 6
assert_exit 0 as_key carol git -C "$REPO" push agent main:production
assert_contains "$ERR" "is live" "[git] branch = production: a push of production deploys"
expect_serving hello "hello from 6" "production deployed v6"
commit_change "$REPO" "Version 7" VERSION 7
assert_exit 0 as_key carol git -C "$REPO" push agent main
assert_contains "$ERR" "branch main: kept, not deployed (the deploy branch is production)" \
    "[git] branch = production: main is no longer deployed"
expect_serving hello "hello from 6" "main did not deploy"

# --- destroy removes the app's repository ----------------------------------------------
assert_true "the app's repository exists" test -d "$DATA/git/hello.git"
assert_exit 0 dctl destroy hello --yes
assert_false "destroy: the app's repository is gone" test -e "$DATA/git/hello.git"
assert_exit 0 as_key carol git -C "$REPO" push agent main:production
expect_serving hello "hello from 7" "a push after destroy deploys the app again, as v1"
assert_eq v1 "$(sqlite3 "$DATA/state.db" "select id from releases where app='hello' and state='PRODUCTION'")" \
    "after destroy, the first push is v1"

# --- a deploy.toml naming another app is refused: a key cannot deploy outside its apps --
sed -i 's/^app = .*/app = "other"/' "$REPO/deploy.toml"
commit_change "$REPO" "Another app's deploy.toml" VERSION 8
BEFORE=$(agent_ref hello production)
assert_exit 1 as_key carol git -C "$REPO" push agent main:production
assert_contains "$ERR" 'app = "other" but this deployment is for app "hello"' "another app's deploy.toml: refused, saying why"
assert_eq "$BEFORE" "$(agent_ref hello production)" "another app's deploy.toml: the branch did not move"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "select count(*) from releases where app='other'")" "another app's deploy.toml: nothing of app other"
git -C "$REPO" reset -q --hard HEAD~1

# --- the agent killed in the middle of a push's build -----------------------------------
write_toml "$REPO" hello build='sleep 4; mkdir -p public; echo "hello from $(cat VERSION)" > public/index.html; echo ok > public/healthz'
printf '\n[git]\nbranch = "production"\n' >>"$REPO/deploy.toml"
commit_change "$REPO" "Slow build" VERSION 9
BEFORE=$(agent_ref hello production)
as_key carol git -C "$REPO" push agent main:production >"$TEST_TMP/slow-push.log" 2>&1 &
PUSH_PID=$!
building() { [[ $(sqlite3 "$DATA/state.db" "select count(*) from releases where app='hello' and state='BUILDING'") == 1 ]]; }
wait_until 20 building || fail "the slow push's release builds" "$(cat "$TEST_TMP/slow-push.log")"
kill -9 "$AGENT_PID"
PUSH_RC=0
wait "$PUSH_PID" || PUSH_RC=$?
assert_ne 0 "$PUSH_RC" "agent killed mid-push: the push fails ($(tail -3 "$TEST_TMP/slow-push.log" | tr '\n' ' '))"
assert_eq "$BEFORE" "$(agent_ref hello production)" "agent killed mid-push: the branch did not move"
expect_serving hello "hello from 7" "agent killed mid-push: the serving release keeps serving"
restart_agent
expect_serving hello "hello from 7" "after the restart: still the same release"
assert_eq FAILED "$(sqlite3 "$DATA/state.db" "select state from releases where app='hello' order by seq desc limit 1")" \
    "after the restart: the interrupted release is FAILED"
assert_exit 0 as_key carol git -C "$REPO" push agent main:production
expect_serving hello "hello from 9" "pushed again: it deploys"
