#!/usr/bin/env bash
# Webhooks (docs/git.md) with real parts: a real git server (git daemon) serving a
# repository the test made, GitHub-, GitLab- and Gitea-shaped deliveries signed by the test
# (openssl), curl posting them. A push on the deploy branch makes the agent fetch the commit
# and deploy it (202 names the release at once); a bad or missing signature is 401 and
# audited; a delivery seen before is not deployed twice; a body over 1 MiB is 413; other
# branches and events are recorded and not deployed; a rotated secret refuses the old one;
# deployctl hooks ls shows every delivery with its release's state. Over ssh (a real sshd),
# the app's deploy key fetches once the server takes it, the server's host key is trusted on
# the first fetch and a changed one refused, and a rotated key no longer fetches.
source "$(dirname "$0")/lib.sh"
require_binaries
SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}
require_tools "git openssl curl jq sqlite3 openssh-server" git openssl curl jq sqlite3 ssh-keygen "$SSHD_BIN"

start_agent
ORIGIN=$TEST_TMP/origin
mkdir -p "$ORIGIN"
GIT_PORT=$(free_port)
git daemon --verbose --reuseaddr --export-all --base-path="$ORIGIN" --listen=127.0.0.1 --port="$GIT_PORT" \
    "$ORIGIN" >"$TEST_TMP/git-daemon.log" 2>&1 &
GIT_DAEMON=$!
daemon_cleanup() {
    kill "$GIT_DAEMON" 2>/dev/null
    stop_sshds
}
# (errexit is off in the trap: a failed test's status still reaches stop_all, which prints the
# agent's log and ends everything the test started)
at_exit daemon_cleanup
wait_until 10 port_in_use "$GIT_PORT" || fail "git daemon listens on 127.0.0.1:$GIT_PORT"

# The app's repository, pushed to the served bare one; deployed once by hand with a
# deploy.toml that names where to fetch from (file:// first, git:// later).
make_app_repo hello
APP=hello
git clone -q --bare "$REPO" "$ORIGIN/hello.git"
git -C "$REPO" remote add origin "$ORIGIN/hello.git"
printf '\n[git]\nbranch = "main"\nurl = "file://%s"\n' "$ORIGIN/hello.git" >>"$REPO/deploy.toml"
commit_change "$REPO" "Fetch from file://"
git -C "$REPO" push -q origin main
assert_exit 0 dctl deploy
expect_serving hello "hello from 1" "v1 deployed by hand"

assert_exit 0 dctl hooks secret
SECRET=$OUT
assert_match "$SECRET" '^[0-9a-f]{64}$' "hooks secret: 32 random bytes in hex, alone on stdout"
assert_contains "$ERR" "/v1/hooks/github/hello" "hooks secret: names the GitHub path"
assert_exit 0 dctl hooks secret
assert_eq "$SECRET" "$OUT" "hooks secret: the same secret on the next call"
assert_true "the secret is not stored in clear in state.db" \
    bash -c "! sqlite3 '$DATA/state.db' .dump | grep -q '$SECRET'"

# deliver PROVIDER EVENT DELIVERY-ID BODY-FILE [SECRET] [SIGNATURE]: posts a delivery signed
# as the provider signs it (GitLab: the token itself); sets CODE and ANSWER.
hmac() { openssl dgst -sha256 -hmac "$1" <"$2" | awk '{print $NF}'; }
deliver() {
    local provider=$1 event=$2 id=$3 body=$4 secret=${5:-$SECRET} sig=${6-}
    local -a headers=(-H "Content-Type: application/json")
    case $provider in
    github)
        [[ -z $sig ]] && sig=sha256=$(hmac "$secret" "$body")
        headers+=(-H "X-GitHub-Event: $event" -H "X-GitHub-Delivery: $id")
        [[ $sig != none ]] && headers+=(-H "X-Hub-Signature-256: $sig") ;;
    gitlab)
        headers+=(-H "X-Gitlab-Event: $event" -H "X-Gitlab-Event-UUID: $id")
        [[ $sig != none ]] && headers+=(-H "X-Gitlab-Token: ${sig:-$secret}") ;;
    gitea)
        [[ -z $sig ]] && sig=$(hmac "$secret" "$body")
        headers+=(-H "X-Gitea-Event: $event" -H "X-Gitea-Delivery: $id")
        [[ $sig != none ]] && headers+=(-H "X-Gitea-Signature: $sig") ;;
    esac
    CODE=$(curl -s -o "$TEST_TMP/answer" -w '%{http_code}' -X POST "${headers[@]}" \
        --data-binary @"$body" "$AGENT_URL/v1/hooks/$provider/hello")
    ANSWER=$(cat "$TEST_TMP/answer")
}
# push_event FILE REF COMMIT: a push event's body, as the providers shape it.
push_event() {
    jq -n --arg ref "$2" --arg after "$3" \
        '{ref: $ref, before: "0000000000000000000000000000000000000000", after: $after,
          repository: {full_name: "it/hello"}, object_kind: "push"}' >"$1"
}
release_count() { sqlite3 "$DATA/state.db" "select count(*) from releases where app='hello'"; }
serving_body() { fetch hello / "$PROXY_PORT"; }
is_serving() { [[ $(serving_body) == "$1" ]]; }

# --- GitHub: a push on main deploys; 202 names the release at once --------------------
commit_change "$REPO" "Version 2" VERSION 2
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push2.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver github push d-0001 "$TEST_TMP/push2.json"
assert_eq 202 "$CODE" "github push: 202 Accepted ($ANSWER)"
assert_eq v2 "$(jq -r .release <<<"$ANSWER")" "github push: the answer names the release"
assert_eq deploying "$(jq -r .result <<<"$ANSWER")" "github push: deploying"
wait_until 20 is_serving "hello from 2" || fail "github push: v2 serves" "$(serving_body)"
pass "github push: v2 serves"

# --- the same delivery again is acknowledged, not deployed twice -----------------------
COUNT=$(release_count)
deliver github push d-0001 "$TEST_TMP/push2.json"
assert_eq 200 "$CODE" "replayed delivery: 200"
assert_eq true "$(jq -r .duplicate <<<"$ANSWER")" "replayed delivery: says it was seen"
assert_eq v2 "$(jq -r .release <<<"$ANSWER")" "replayed delivery: names the release it made"
assert_eq "$COUNT" "$(release_count)" "replayed delivery: no new release"

# --- bad and missing signatures: 401, audited, nothing recorded as a delivery ----------
commit_change "$REPO" "Version 3" VERSION 3
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push3.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver github push d-0002 "$TEST_TMP/push3.json" "not-the-secret"
assert_eq 401 "$CODE" "bad signature: 401"
assert_contains "$ANSWER" "does not match" "bad signature: says so"
deliver github push d-0003 "$TEST_TMP/push3.json" "$SECRET" none
assert_eq 401 "$CODE" "missing signature: 401"
assert_contains "$ANSWER" "missing X-Hub-Signature-256" "missing signature: names the header"
deliver gitlab "Push Hook" d-0004 "$TEST_TMP/push3.json" "$SECRET" wrong-token
assert_eq 401 "$CODE" "gitlab: a wrong token is 401"
assert_eq "$COUNT" "$(release_count)" "refused deliveries deployed nothing"
AUDIT=$(sqlite3 "$DATA/state.db" "select status || ' ' || command from api_audit where path = '/v1/hooks/github/hello' and status = 401")
assert_contains "$AUDIT" "401 webhook github: X-Hub-Signature-256 does not match" "audit: the bad signature"
assert_contains "$AUDIT" "401 webhook github: missing X-Hub-Signature-256" "audit: the missing one"
assert_eq 0 "$(sqlite3 "$DATA/state.db" "select count(*) from hook_deliveries where delivery in ('d-0002','d-0003','d-0004')")" \
    "refused deliveries are not recorded as deliveries (a forger cannot use up an id)"

# --- a body over 1 MiB: 413 ----------------------------------------------------------
head -c 1100000 /dev/zero | tr '\0' 'a' >"$TEST_TMP/big.json"
deliver github push d-0005 "$TEST_TMP/big.json"
assert_eq 413 "$CODE" "a body over 1 MiB: 413"

# --- GitLab: its token and Push Hook event deploy v3 ------------------------------------
deliver gitlab "Push Hook" g-0001 "$TEST_TMP/push3.json"
assert_eq 202 "$CODE" "gitlab push: 202 ($ANSWER)"
wait_until 20 is_serving "hello from 3" || fail "gitlab push: v3 serves" "$(serving_body)"
pass "gitlab push: v3 serves"

# --- Gitea, fetching over git:// from git daemon ----------------------------------------
sed -i "s|^url = .*|url = \"git://127.0.0.1:$GIT_PORT/hello.git\"|" "$REPO/deploy.toml"
commit_change "$REPO" "Version 4, fetched from git daemon" VERSION 4
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push4.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver gitea push t-0001 "$TEST_TMP/push4.json"
assert_eq 202 "$CODE" "gitea push (file://, the serving release's url): 202"
wait_until 20 is_serving "hello from 4" || fail "gitea push: v4 serves" "$(serving_body)"
commit_change "$REPO" "Version 5" VERSION 5
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push5.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver gitea push t-0002 "$TEST_TMP/push5.json"
assert_eq 202 "$CODE" "gitea push fetched over git:// from git daemon: 202 ($ANSWER)"
assert_eq t-0002 "$(jq -r .delivery <<<"$ANSWER")" "gitea: the delivery is known by its X-Gitea-Delivery"
wait_until 20 is_serving "hello from 5" || fail "git:// fetch: v5 serves" "$(serving_body)"
pass "git:// fetch: v5 serves"
assert_eq "$(git -C "$REPO" rev-parse HEAD)" "$(git --git-dir "$DATA/git/hello.git" rev-parse main)" \
    "the agent's repository has the fetched commit"
assert_contains "$(cat "$TEST_TMP/git-daemon.log")" "upload-pack for '/hello.git'" "the agent fetched it from git daemon"

# --- what is recorded and not deployed ---------------------------------------------------
COUNT=$(release_count)
push_event "$TEST_TMP/feature.json" refs/heads/feature "$(git -C "$REPO" rev-parse HEAD)"
deliver github push d-0010 "$TEST_TMP/feature.json"
assert_eq 200 "$CODE" "another branch: 200"
assert_eq ignored "$(jq -r .result <<<"$ANSWER")" "another branch: ignored"
assert_contains "$(jq -r .detail <<<"$ANSWER")" "not the deploy branch (main)" "another branch: says why"
echo '{"zen":"Keep it logically awesome."}' >"$TEST_TMP/ping.json"
deliver github ping d-0011 "$TEST_TMP/ping.json"
assert_eq 200 "$CODE" "ping: 200"
assert_eq true "$(jq -r .pong <<<"$ANSWER")" "ping: pong"
echo '{"action":"opened","number":7}' >"$TEST_TMP/pr.json"
deliver github pull_request d-0012 "$TEST_TMP/pr.json"
assert_eq ignored "$(jq -r .result <<<"$ANSWER")" "pull_request: recorded, not deployed"
push_event "$TEST_TMP/stray.json" refs/heads/main "$(printf 'f%.0s' {1..40})"
deliver github push d-0013 "$TEST_TMP/stray.json"
assert_eq 409 "$CODE" "a commit that is not on the branch: 409"
assert_contains "$ANSWER" "is not on branch main" "a commit not on the branch: says so"
assert_eq "$COUNT" "$(release_count)" "none of these deployed anything"

# --- a failing build: 202 with its release, which fails; v5 keeps serving ---------------
write_toml "$REPO" hello build='echo "error: broken" >&2; exit 4'
printf '\n[git]\nbranch = "main"\nurl = "git://127.0.0.1:%s/hello.git"\n' "$GIT_PORT" >>"$REPO/deploy.toml"
commit_change "$REPO" "Broken" VERSION 6
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push6.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver github push d-0020 "$TEST_TMP/push6.json"
assert_eq 202 "$CODE" "a broken build still answers 202 with its release"
BROKEN=$(jq -r .release <<<"$ANSWER")
failed() { [[ $(release_state hello "$BROKEN") == FAILED ]]; }
wait_until 20 failed || fail "the broken release fails" "$(release_state hello "$BROKEN")"
expect_serving hello "hello from 5" "a broken build via webhook: v5 keeps serving"

# --- hooks ls: every delivery, its release and that release's state --------------------
assert_exit 0 dctl hooks ls
assert_match "$OUT" "github push +[0-9a-f]{12} +$BROKEN +deploying \(FAILED\)" "hooks ls: the broken deploy and its state"
assert_match "$OUT" "gitlab push +[0-9a-f]{12} +v3 +deploying \(INACTIVE\)" "hooks ls: the gitlab one"
assert_contains "$OUT" "ignored: refs/heads/feature is not the deploy branch (main)" "hooks ls: the ignored branch"
assert_contains "$OUT" "github ping" "hooks ls: the ping"
assert_exit 0 dctl --json hooks ls
assert_eq v2 "$(jq -r '.deliveries[] | select(.delivery=="d-0001") | .release' <<<"$OUT")" "hooks ls --json: a delivery's release"
assert_eq "INACTIVE" "$(jq -r '.deliveries[] | select(.delivery=="d-0001") | .release_state' <<<"$OUT")" \
    "hooks ls --json: its state now"

# --- a rotated secret refuses the old one ----------------------------------------------
assert_exit 0 dctl hooks secret --rotate
NEW_SECRET=$OUT
assert_ne "$SECRET" "$NEW_SECRET" "hooks secret --rotate: a new secret"
deliver github push d-0030 "$TEST_TMP/push5.json" "$SECRET"
assert_eq 401 "$CODE" "after rotation: the old secret is refused"
deliver github push d-0031 "$TEST_TMP/push5.json" "$NEW_SECRET"
assert_eq 200 "$CODE" "after rotation: the new one is taken ($ANSWER)"
assert_eq unchanged "$(jq -r .result <<<"$ANSWER")" "v5's commit again: nothing to deploy"

# --- a remote that never answers: 504 after --git-fetch-timeout, 503 while it hangs ------
HANG_PORT=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
held = []
while True:
    c, _ = s.accept(); held.append(c)  # accepted, never answered
' "$HANG_PORT" >/dev/null 2>&1 &
HANG_PID=$!
wait_until 10 port_in_use "$HANG_PORT" || fail "the silent server listens"
# A short timeout for this part only: a fetch over ssh on a loaded machine may take longer.
kill_agent -TERM
AGENT_EXTRA_ARGS=(--git-fetch-timeout 2s)
restart_agent
write_toml "$REPO" hello
printf '\n[git]\nbranch = "main"\nurl = "git://127.0.0.1:%s/hello.git"\n' "$HANG_PORT" >>"$REPO/deploy.toml"
commit_change "$REPO" "Fetch from a remote that hangs" VERSION 7
assert_exit 0 dctl deploy
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push7.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
START=$(date +%s%N)
deliver github push d-0040 "$TEST_TMP/push7.json" "$NEW_SECRET"
ELAPSED_MS=$(( ($(date +%s%N) - START) / 1000000 ))
assert_eq 504 "$CODE" "a remote that never answers: 504 ($ANSWER)"
assert_contains "$ANSWER" "took more than 2s (--git-fetch-timeout)" "504: says why"
assert_true "504 came after the timeout, not much later (${ELAPSED_MS} ms)" test "$ELAPSED_MS" -ge 1900 -a "$ELAPSED_MS" -lt 6000
deliver github push d-0041 "$TEST_TMP/push7.json" "$NEW_SECRET"
assert_eq 503 "$CODE" "while that fetch hangs: the app's next delivery is 503"
assert_contains "$ANSWER" "still running" "503: says why"
assert_exit 0 dctl status
assert_contains "$OUT" "v7" "the agent answers the rest meanwhile"
kill "$HANG_PID"
wait "$HANG_PID" 2>/dev/null || true
slot_free() { deliver github push "d-005$((++TRIES))" "$TEST_TMP/push7.json" "$NEW_SECRET"; [[ $CODE != 503 ]]; }
TRIES=0
wait_until 10 slot_free || fail "once the remote goes away, the fetch ends and the slot is free" "$ANSWER"
assert_eq 502 "$CODE" "the remote gone: 502 with the fetch's error ($ANSWER)"
kill_agent -TERM
AGENT_EXTRA_ARGS=()
restart_agent

# --- a repository that asks for a token: [git] token names a secret of the app ----------
HTTP_PORT=$(free_port)
python3 "$(dirname "$0")/git_http_auth.py" "$HTTP_PORT" "$ORIGIN" x-access-token token-for-the-repo \
    >"$TEST_TMP/git-http.log" 2>&1 &
HTTP_PID=$!
wait_until 10 port_in_use "$HTTP_PORT" || fail "the git server with a token listens" "$(cat "$TEST_TMP/git-http.log")"
write_toml "$REPO" hello
printf '\n[git]\nbranch = "main"\nurl = "http://127.0.0.1:%s/hello.git"\ntoken = "REPO_TOKEN"\n' "$HTTP_PORT" >>"$REPO/deploy.toml"
commit_change "$REPO" "Fetch over http with a token" VERSION 8
assert_exit 0 dctl deploy
git -C "$REPO" push -q origin main
commit_change "$REPO" "Version 9" VERSION 9
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push9.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver github push d-0060 "$TEST_TMP/push9.json" "$NEW_SECRET"
assert_eq 409 "$CODE" "[git] token naming no secret: 409"
assert_contains "$ANSWER" "REPO_TOKEN, which is not a secret of hello" "no such secret: says so"
assert_exit 0 dctl env set --secret REPO_TOKEN=not-the-token
deliver github push d-0061 "$TEST_TMP/push9.json" "$NEW_SECRET"
assert_eq 502 "$CODE" "a token the repository refuses: 502"
assert_contains "$ANSWER" "refused the token of [git] token" "a refused token: says so"
assert_not_contains "$ANSWER" "not-the-token" "the token's value is never in an answer"
assert_exit 0 dctl env set --secret REPO_TOKEN=token-for-the-repo
deliver github push d-0062 "$TEST_TMP/push9.json" "$NEW_SECRET"
assert_eq 202 "$CODE" "the repository's token: the fetch goes through ($ANSWER)"
wait_until 20 is_serving "hello from 9" || fail "fetched with a token: v9 serves" "$(serving_body)"
pass "fetched with a token: v9 serves"
assert_contains "$(cat "$TEST_TMP/git-http.log")" "Basic" "the token went as HTTP Basic credentials"
kill "$HTTP_PID" 2>/dev/null || true

# --- over ssh with the app's deploy key: a real sshd; its host key trusted on first use -----
SSHD_DIR=$TEST_TMP/sshd
mkdir -p "$SSHD_DIR"
ssh-keygen -q -t ed25519 -N '' -C it-host -f "$SSHD_DIR/host_key"
ssh-keygen -q -t ed25519 -N '' -C other-host -f "$SSHD_DIR/other_host_key"
: >"$SSHD_DIR/authorized_keys"
start_sshd git "$SSHD_DIR/host_key"
assert_exit 0 dctl hooks key
DEPLOY_KEY=$OUT
assert_match "$DEPLOY_KEY" '^ecdsa-sha2-nistp256 [A-Za-z0-9+/=]+ deploy-agent@hello$' "hooks key: the public key alone on stdout"
assert_contains "$ERR" "add it to the repository's deploy keys" "hooks key: says where it goes"
assert_exit 0 dctl hooks key
assert_eq "$DEPLOY_KEY" "$OUT" "hooks key: the same key on the next call"
assert_true "the deploy key's private half is not stored in clear" \
    bash -c "! sqlite3 '$DATA/state.db' .dump | grep -q 'PRIVATE KEY'"
SSH_URL="ssh://$(id -un)@127.0.0.1:$SSH_PORT$ORIGIN/hello.git"
write_toml "$REPO" hello
printf '\n[git]\nbranch = "main"\nurl = "%s"\n' "$SSH_URL" >>"$REPO/deploy.toml"
commit_change "$REPO" "Fetch over ssh" VERSION 10
assert_exit 0 dctl deploy
git -C "$REPO" push -q origin main
commit_change "$REPO" "Version 11" VERSION 11
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push11.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver github push d-0070 "$TEST_TMP/push11.json" "$NEW_SECRET"
assert_eq 502 "$CODE" "a deploy key the server does not take: 502 ($ANSWER)"
assert_contains "$ANSWER" "refused the app's deploy key" "a refused deploy key: says to add it"
echo "$DEPLOY_KEY" >"$SSHD_DIR/authorized_keys"
deliver github push d-0071 "$TEST_TMP/push11.json" "$NEW_SECRET"
assert_eq 202 "$CODE" "the deploy key added: the fetch over ssh goes through ($ANSWER)"
wait_until 20 is_serving "hello from 11" || fail "fetched over ssh: v11 serves" "$(serving_body)"
pass "fetched over ssh with the deploy key: v11 serves"
assert_contains "$(cat "$SSHD_DIR/git.log")" "Accepted publickey for $(id -un)" "sshd took the deploy key"
HOST_FP=$(ssh-keygen -lf "$SSHD_DIR/host_key.pub" | awk '{print $2}')
assert_exit 0 dctl hooks key
assert_contains "$ERR" "trusts 127.0.0.1:$SSH_PORT ssh-ed25519 $HOST_FP" "hooks key: the host key trusted at the first fetch"
assert_eq 0 "$(find "$DATA" -maxdepth 1 -name 'deploy-key.tmp-*' | wc -l)" "the deploy key's file for the fetch is gone"

# A server whose host key is not the one trusted: refused, v11 keeps serving.
sqlite3 "$DATA/state.db" "update git_hosts set key = '$(cut -d' ' -f1,2 "$SSHD_DIR/other_host_key.pub")' where app = 'hello'"
commit_change "$REPO" "Version 12" VERSION 12
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push12.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver github push d-0072 "$TEST_TMP/push12.json" "$NEW_SECRET"
assert_eq 502 "$CODE" "a changed host key: 502 ($ANSWER)"
assert_contains "$ANSWER" "the host key of 127.0.0.1:$SSH_PORT changed" "a changed host key: says so"
assert_contains "$ANSWER" "it is now $HOST_FP" "a changed host key: names the new fingerprint"
expect_serving hello "hello from 11" "a changed host key deployed nothing"
assert_exit 0 dctl hooks key --forget-hosts
assert_contains "$ERR" "host keys forgotten" "hooks key --forget-hosts: says so"
deliver github push d-0073 "$TEST_TMP/push12.json" "$NEW_SECRET"
assert_eq 202 "$CODE" "host keys forgotten: the next fetch trusts the server's key ($ANSWER)"
wait_until 20 is_serving "hello from 12" || fail "v12 serves" "$(serving_body)"

# A rotated deploy key: the old one no longer fetches.
assert_exit 0 dctl hooks key --rotate
assert_ne "$DEPLOY_KEY" "$OUT" "hooks key --rotate: a new key"
commit_change "$REPO" "Version 13" VERSION 13
git -C "$REPO" push -q origin main
push_event "$TEST_TMP/push13.json" refs/heads/main "$(git -C "$REPO" rev-parse HEAD)"
deliver github push d-0074 "$TEST_TMP/push13.json" "$NEW_SECRET"
assert_eq 502 "$CODE" "after rotation the server (with the old key only) refuses: 502"
expect_serving hello "hello from 12" "v12 keeps serving"
