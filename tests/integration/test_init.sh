#!/usr/bin/env bash
# deployctl init, through the real binary: each fixture folder gives its template, --list,
# --template, refusal without --force (files unchanged, by hash), --force, --json, unknown
# template and empty folder (exit 2), and a static site from init to a page served by the proxy.
source "$(dirname "$0")/lib.sh"
require_binaries

FIXTURES=$REPO_ROOT/tests/fixtures/init
init_cmd() { "$DEPLOYCTL_BIN" --no-color init "$@"; }
# fixture NAME: a fresh copy of tests/fixtures/init/NAME; sets DIR.
fixture() {
    DIR=$TEST_TMP/fixtures/$1
    rm -rf "$DIR"
    mkdir -p "$(dirname "$DIR")"
    cp -r "$FIXTURES/$1" "$DIR"
}
hashes() { (cd "$1" && sha256sum deploy.toml Dockerfile 2>/dev/null || true); }

# --- every fixture: its template, the files, a deploy.toml deployctl accepts ----------
while read -r name template files; do
    fixture "$name"
    assert_exit 0 init_cmd "$DIR" --json
    assert_jq "$OUT" ".event == \"init\" and .template == \"$template\" and .detected" \
        "$name: template $template"
    assert_eq "$files" "$(jq -r '[.files[].path] | join(",")' <<<"$OUT")" "$name: writes $files"
    assert_true "$name: evidence names a file" jq -e '.evidence | length > 0' <<<"$OUT"
    # What the agent needs: a container engine for a Dockerfile, else any engine.
    engine=any
    [[ $files == *Dockerfile* || $template == dockerfile ]] && engine=container
    assert_jq "$OUT" ".engine == \"$engine\" and (.needs | length > 20)" "$name: engine $engine, and what the agent needs"
    # deployctl reads the new deploy.toml (a config error would exit 2 before any agent);
    # one template of each kind (the unit tests parse every one).
    if [[ $name == dockerfile-node || $name == node-vite || $name == python-fastapi-pyproject ]]; then
        run "$DEPLOYCTL_BIN" -C "$DIR" releases --host http://127.0.0.1:1
        assert_eq 3 "$RC" "$name: deployctl accepts the deploy.toml (then cannot reach the agent)"
    fi
done <<'LIST'
dockerfile-node dockerfile deploy.toml
node-next node-next deploy.toml,Dockerfile
node-vite node-static deploy.toml
node-cra node-static deploy.toml
node-express node-server deploy.toml,Dockerfile
node-fastify node-server deploy.toml,Dockerfile
node-vite-express node-server deploy.toml,Dockerfile
python-flask python-flask deploy.toml,Dockerfile
python-django python-django deploy.toml,Dockerfile
python-fastapi-pyproject python-fastapi deploy.toml,Dockerfile
go go deploy.toml,Dockerfile
go-cmd go deploy.toml,Dockerfile
php-laravel php deploy.toml,Dockerfile
static static deploy.toml
node-tooling-static static deploy.toml
node-plain node-server deploy.toml,Dockerfile
python-plain python deploy.toml,Dockerfile
go-stdlib go deploy.toml,Dockerfile
php-plain php deploy.toml,Dockerfile
rust rust deploy.toml,Dockerfile
rust-bin rust deploy.toml,Dockerfile
rust-nolock rust deploy.toml,Dockerfile
rust-workspace rust deploy.toml,Dockerfile
c-make c-make deploy.toml,Dockerfile
c-make-all c-make deploy.toml,Dockerfile
c-make-unknown c-make deploy.toml,Dockerfile
LIST

# --- human output: what, why, the files, the next step ----------------------------------
fixture node-vite-express
assert_exit 0 init_cmd "$DIR"
assert_contains "$OUT" "Detected Node.js (Express): template node-server" "says what it detected"
assert_contains "$OUT" 'because package.json: "express" in dependencies' "and why"
assert_contains "$OUT" '"vite" in devDependencies too' "and what else it saw"
assert_contains "$OUT" "App name fullstack (from the name \"fullstack\" in package.json)" "the app name"
assert_contains "$OUT" "Wrote $DIR/Dockerfile" "the files written"
assert_contains "$OUT" "deployctl deploy $DIR --host" "the next step"
assert_contains "$OUT" "git init" "not a git repository yet: says to commit"
assert_contains "$(cat "$DIR/Dockerfile")" 'CMD ["npm", "start"]' "Dockerfile starts the server"
assert_contains "$OUT" "==> Agent: this app builds with its Dockerfile: the agent needs a container engine (deploy-agent serve --engine auto|docker|podman)" \
    "a Dockerfile: says the agent needs a container engine, and how to start it"
assert_contains "$OUT" "note: deployctl init --engine process writes build and run commands instead, for an agent without a container engine" \
    "a Dockerfile, no agent asked: says how to write it for the process engine"
fixture node-vite-express
assert_exit 0 init_cmd "$DIR" --engine process
assert_contains "$OUT" "==> For the process engine: --engine process" "--engine process: says what it is written for"
assert_contains "$OUT" "==> Agent: the agent runs the build and the app as plain processes (any engine, --engine process too): the server needs Node.js 18+ and npm on the agent's PATH" \
    "--engine process: says which runtime the server needs"
assert_contains "$(cat "$DIR/deploy.toml")" 'command = '"'"'npm_config_cache="$CACHE_DIR/npm" npm install --no-audit --no-fund && npm run build && npm prune --omit=dev'"'" \
    "--engine process: the build command installs (npm's cache in \$CACHE_DIR), builds and prunes"
assert_contains "$(cat "$DIR/deploy.toml")" 'cache = ["node_modules"]' \
    "--engine process: node_modules is kept in the build cache"
assert_contains "$(cat "$DIR/deploy.toml")" '# cache_max = "2G"' \
    "--engine process: the build cache's size, commented out"
assert_false "--engine process: no Dockerfile" test -e "$DIR/Dockerfile"
fixture static
assert_exit 0 init_cmd "$DIR"
assert_contains "$OUT" "==> Agent: the agent's proxy serves the files itself: any engine will do (--engine process too), nothing to install on the agent" \
    "a static site: says any engine will do"
fixture node-vite
assert_exit 0 init_cmd "$DIR"
assert_contains "$OUT" "==> Agent: the build runs on the agent as a plain process (any engine, --engine process too): the agent needs Node.js and npm" \
    "a static build with Node.js: names the runtime the agent needs"
assert_contains "$(cat "$DIR/deploy.toml")" 'command = '"'"'YARN_CACHE_FOLDER="$CACHE_DIR/yarn" yarn install --frozen-lockfile && yarn run build'"'" \
    "a static build with yarn: yarn's cache in \$CACHE_DIR, no prune"
assert_contains "$(cat "$DIR/deploy.toml")" 'cache = ["node_modules"]' \
    "a static build: node_modules is kept in the build cache"
fixture c-make
assert_exit 0 init_cmd "$DIR" --engine process
assert_contains "$OUT" "because Makefile line 5: greeter, the default goal (the run command starts ./greeter)" \
    "C with a Makefile: says where the program's name comes from"
assert_contains "$OUT" "note: the run command starts ./greeter, the program init read from the Makefile: check that it is the one make builds" \
    "C with a Makefile: asks to check the program's name"
assert_contains "$(cat "$DIR/deploy.toml")" 'command = "exec ./greeter"' "C with a Makefile: the run command starts it"
fixture c-make-unknown
assert_exit 0 init_cmd "$DIR"
assert_contains "$OUT" "note: no program found in the Makefile" "no program in the Makefile: says so"
assert_contains "$(cat "$DIR/Dockerfile")" "# deployctl init found no program in the Makefile: replace PROGRAM" \
    "no program in the Makefile: the Dockerfile says what to replace"
fixture rust-workspace
assert_exit 0 init_cmd "$DIR" --engine process
assert_contains "$OUT" "note: the workspace builds several programs (shop-api in crates/api, shop-worker in crates/worker)" \
    "a Cargo workspace: names its programs, and which one the build copies"
assert_contains "$(cat "$DIR/deploy.toml")" 'cp "$CACHE_DIR/target/release/shop-api" app' "a Cargo workspace: the first member's program"

# --- --list -----------------------------------------------------------------------------
assert_exit 0 init_cmd --list
for t in c-make dockerfile go node-next node-server node-static php python python-django \
    python-fastapi python-flask rust static; do
    assert_match "$OUT" "^$t +[A-Z]" "--list: $t with its description"
done
assert_exit 0 init_cmd --list --json
assert_eq 13 "$(jq -s 'map(select(.event == "template" and (.description | length > 0))) | length' <<<"$OUT")" \
    "--list --json: 13 template events"

# --- refusal without --force, by hash; --force replaces ---------------------------------
fixture node-express
assert_exit 0 init_cmd "$DIR"
printf '# mine\n' >>"$DIR/deploy.toml"
before=$(hashes "$DIR")
assert_exit 2 init_cmd "$DIR"
assert_contains "$ERR" "deploy.toml and Dockerfile already exist in $DIR: nothing was written" \
    "refusal names the files"
assert_eq "$before" "$(hashes "$DIR")" "refused: files unchanged"
# Refused without asking any agent which engine it runs first: a listener as DEPLOYCTL_HOST
# notes each connection it gets.
ask_port=$(free_port)
python3 -c 'import socket,sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); print("ready", flush=True)
while True:
    c, _ = s.accept(); open(sys.argv[2], "a").write("connected\n"); c.close()' "$ask_port" "$TEST_TMP/asked" >"$TEST_TMP/asker.out" &
asker=$!
wait_until 5 grep -q ready "$TEST_TMP/asker.out" || fail "the listener for DEPLOYCTL_HOST starts" "$(cat "$TEST_TMP/asker.out")"
DEPLOYCTL_HOST=http://127.0.0.1:$ask_port assert_exit 2 init_cmd "$DIR"
assert_contains "$ERR" "already exist" "with DEPLOYCTL_HOST set: refused the same way"
assert_false "refused without --force: no agent was asked which engine it runs" test -s "$TEST_TMP/asked"
# (with --force, on a copy, the same agent is asked: the listener does see it)
cp -r "$DIR" "$TEST_TMP/forced"
DEPLOYCTL_HOST=http://127.0.0.1:$ask_port init_cmd "$TEST_TMP/forced" --force
assert_true "with --force the agent is asked (the listener saw it)" test -s "$TEST_TMP/asked"
kill "$asker" 2>/dev/null || true
rm "$DIR/Dockerfile"
assert_exit 2 init_cmd "$DIR" --template node-static
assert_contains "$ERR" "deploy.toml already exists" "refusal names deploy.toml"
assert_false "refused: the other file is not written either" test -e "$DIR/Dockerfile"
assert_exit 2 init_cmd "$DIR" --json
assert_jq "$OUT" '.event == "error" and .code == "usage"' "--json: the refusal is an error event"
assert_exit 0 init_cmd "$DIR" --force --json
assert_jq "$OUT" '.files == [{"path":"deploy.toml","replaced":true},{"path":"Dockerfile","replaced":false}]' \
    "--force: deploy.toml replaced, Dockerfile created"
assert_not_contains "$(cat "$DIR/deploy.toml")" "# mine" "--force: the new deploy.toml"

# --- --template overrides detection; -a names the app -----------------------------------
fixture node-express
assert_exit 0 init_cmd "$DIR" --template go -a billing --json
assert_jq "$OUT" '.template == "go" and (.detected | not) and .app == "billing" and .app_source == "-a"' \
    "--template go -a billing"
assert_contains "$(cat "$DIR/Dockerfile")" "FROM golang:" "the go Dockerfile"
assert_contains "$(cat "$DIR/deploy.toml")" 'app = "billing"' "deploy.toml has the app name"

# --- unknown template, nothing detected, a broken package.json: exit 2, nothing written --
fixture static
assert_exit 2 init_cmd "$DIR" --template pyhton-flask
assert_contains "$ERR" "unknown template 'pyhton-flask' (did you mean 'python-flask'?)" "unknown template"
assert_false "unknown template: nothing written" test -e "$DIR/deploy.toml"
fixture empty
assert_exit 2 init_cmd "$DIR"
assert_contains "$ERR" "no app found in $DIR" "nothing detected"
assert_contains "$ERR" "--template NAME" "suggests --template"
assert_contains "$ERR" "python-fastapi" "lists the templates"
assert_false "nothing detected: nothing written" test -e "$DIR/deploy.toml"
fixture bad-package-json
assert_exit 2 init_cmd "$DIR"
assert_contains "$ERR" "package.json: not a valid JSON object" "a broken package.json is named"
assert_exit 2 init_cmd "$TEST_TMP/nowhere"
assert_contains "$ERR" "no such directory" "a missing folder"

# --- end to end: init a static site, commit, deploy, fetch the page through the proxy ----
start_agent
REPO=$TEST_TMP/repos/my-site
mkdir -p "$REPO"
git -C "$REPO" init -q -b main
git -C "$REPO" config user.name "Integration Test"
git -C "$REPO" config user.email "it@example.invalid"
printf '<!doctype html>\n<h1>made by init</h1>\n' >"$REPO/index.html"
assert_exit 0 "$DEPLOYCTL_BIN" -C "$REPO" --no-color init
assert_contains "$OUT" "Detected static site: template static" "e2e: a static site"
assert_contains "$OUT" "git add deploy.toml && git commit" "e2e: in a git repo: says to commit"
git -C "$REPO" add -A
git -C "$REPO" commit -q -m "Site and deploy.toml from deployctl init"
assert_exit 0 dctl deploy
assert_eq PRODUCTION "$(release_state my-site v1)" "e2e: v1 is PRODUCTION"
expect_serving my-site "$(printf '<!doctype html>\n<h1>made by init</h1>')" \
    "e2e: the page is served through the proxy at my-site.localhost"

log "all $CHECKS checks passed"
