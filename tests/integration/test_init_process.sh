#!/usr/bin/env bash
# deployctl init for an agent without a container engine: `init --engine process` on a Node
# (npm, a build script), a Python (a venv in the release), a Go, a PHP (composer, php -S), a
# Rust (cargo) and a C app (make, ccache) writes a deploy.toml with build and run commands and
# no Dockerfile, and each deploys to a process-engine agent and answers through its proxy; the
# Rust and C builds keep cargo's and ccache's work in $CACHE_DIR, and the next build reuses it;
# `init --host` asks the agent its engine (GET /v1/info), and an agent that cannot be reached
# gives the Dockerfile with a note.
# Needs node and npm, python3 with venv, go, php, composer, cargo, make, a C compiler and ccache
# on the agent's PATH (scripts/deps).
source "$(dirname "$0")/lib.sh"
require_binaries

AGENT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin # the agent's builds get this PATH
missing=()
for tool in node npm go php composer cargo make cc ccache; do
    PATH=$AGENT_PATH command -v "$tool" >/dev/null || missing+=("$tool")
done
PATH=$AGENT_PATH python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=("python3-venv")
if ((${#missing[@]})); then
    log "SKIP: needs ${missing[*]} (Debian: apt-get install nodejs npm python3-venv golang-go php-cli composer cargo build-essential ccache)"
    exit 77
fi

FIXTURES=$REPO_ROOT/tests/fixtures/init
# app_repo FIXTURE: a git repository holding a copy of tests/fixtures/init/FIXTURE; sets REPO.
app_repo() {
    REPO=$TEST_TMP/repos/$1
    rm -rf "$REPO"
    mkdir -p "$(dirname "$REPO")"
    cp -r "$FIXTURES/$1" "$REPO"
    git -C "$REPO" init -q -b main
    git -C "$REPO" config user.name "Integration Test"
    git -C "$REPO" config user.email "it@example.invalid"
}
init_cmd() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color init "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

start_agent

# --- each stack: init --engine process, commit, deploy, the app answers through the proxy --
declare -A DEPLOYED # fixture -> the output of its first deploy
while read -r fixture template app runtime body; do
    app_repo "$fixture"
    assert_exit 0 init_cmd --engine process --json
    assert_jq "$OUT" ".template == \"$template\" and .variant == \"process\" and .engine == \"any\" and ([.files[].path] == [\"deploy.toml\"])" \
        "$fixture: $template for the process engine, deploy.toml only"
    assert_false "$fixture: no Dockerfile written" test -e "$REPO/Dockerfile"
    assert_jq "$OUT" ".needs | contains(\"$runtime\")" "$fixture: says the server needs $runtime"
    git -C "$REPO" add -A
    git -C "$REPO" commit -q -m "$fixture with the deploy.toml of deployctl init --engine process"
    start=$(now_ms)
    assert_exit 0 dctl deploy
    log "$fixture: deployed in $(($(now_ms) - start)) ms (build, start, health check)"
    DEPLOYED[$fixture]=$OUT$ERR
    assert_eq PRODUCTION "$(release_state "$app" v1)" "$fixture: v1 is PRODUCTION"
    expect_serving "$app" "$body" "$fixture: the app answers through the proxy at $app.localhost"
done <<'LIST'
node-plain node-server greeter Node.js hello from node, built by npm run build
python-plain python python-plain Python hello from python, in .venv
go-stdlib go clock Go hello from go, built by gc
php-plain php notes PHP hello from php at /
rust rust rusty-clock cargo hello from rust, built by cargo
c-make c-make c-make build-essential hello from c, built by make
LIST

# The venv is in the release, and the build ran in it.
assert_true "python: the venv is inside the release" test -x "$(release_dir python-plain v1)/.venv/bin/python"
assert_true "go: the binary was built in the release" test -x "$(release_dir clock v1)/app"
assert_eq "hello from php at /notes/7" "$(fetch notes /notes/7)" "php: a path without a file goes to public/index.php"

# commit_and_deploy FIXTURE MESSAGE: the change made in the repository of FIXTURE, deployed.
commit_and_deploy() {
    REPO=$TEST_TMP/repos/$1
    git -C "$REPO" commit -q -am "$2"
    start=$(now_ms)
    assert_exit 0 dctl deploy
    log "$1: $2: deployed in $(($(now_ms) - start)) ms"
}
# cargo_time OUTPUT: how long cargo said the build took ("0.86s").
cargo_time() { sed -n 's/.*Finished release .* in \([0-9.]*s\).*/\1/p' <<<"$1" | tail -1; }

# --- Rust: cargo's downloads and target directory in $CACHE_DIR, reused by the next build ----
# The agent keeps $CACHE_DIR as the last successful build left it in
# DATA/apps/APP/build-cache/dir (docs/build-cache.md).
RUST_CACHE=$DATA/apps/rusty-clock/build-cache/dir
assert_true "rust: the binary was copied into the release as ./app" test -x "$(release_dir rusty-clock v1)/app"
assert_true "rust: cargo's target directory is kept in \$CACHE_DIR" test -x "$RUST_CACHE/target/release/rusty-clock"
assert_contains "${DEPLOYED[rust]}" "Compiling rusty-clock v0.1.0" "rust v1: cargo compiled the app"
# A dependency without a registry: a crate in a local git repository, which cargo clones into
# CARGO_HOME ($CACHE_DIR/cargo) and compiles into the target directory, as it would a crate it
# downloads. The build after it compiles the app only, if both were kept.
GREETING=$TEST_TMP/greeting
mkdir -p "$GREETING/src"
printf '[package]\nname = "greeting"\nversion = "0.1.0"\nedition = "2021"\n' >"$GREETING/Cargo.toml"
printf 'pub fn hello() -> &%sstatic str {\n    "hello"\n}\n' "'" >"$GREETING/src/lib.rs"
git -C "$GREETING" init -q -b main
git -C "$GREETING" add -A
git -C "$GREETING" -c user.name=it -c user.email=it@example.invalid commit -q -m greeting
REPO=$TEST_TMP/repos/rust
printf 'greeting = { git = "file://%s" }\n' "$GREETING" >>"$REPO/Cargo.toml"
assert_true "rust: Cargo.lock pins the git dependency" \
    env -C "$REPO" PATH="$AGENT_PATH" CARGO_HOME="$TEST_TMP/cargo-home" cargo generate-lockfile -q
commit_and_deploy rust "a dependency from git"
assert_contains "$OUT$ERR" "Compiling greeting v0.1.0" "rust v2: the new dependency is compiled"
log "rust: cargo's build took $(cargo_time "${DEPLOYED[rust]}") (v1, nothing cached), $(cargo_time "$OUT$ERR") (v2, with a new dependency)"
sed -i 's/built by cargo/built by cargo again/' "$REPO/src/main.rs"
commit_and_deploy rust "a new text"
assert_contains "$OUT$ERR" "Compiling rusty-clock v0.1.0" "rust v3: the app's changed crate is compiled"
assert_not_contains "$OUT$ERR" "Compiling greeting" "rust v3: the dependency is not compiled again (CARGO_TARGET_DIR kept)"
assert_not_contains "$OUT$ERR" "Updating git repository" "rust v3: nor fetched again (CARGO_HOME kept)"
log "rust: cargo's build took $(cargo_time "$OUT$ERR") (v3, the dependency from the cache)"
expect_serving rusty-clock "hello from rust, built by cargo again" "rust v3: the new build answers"

# --- C: ccache's objects in $CACHE_DIR; the next build compiles only the file that changed ---
# ccache_stat KEY: a counter of the ccache kept in the app's $CACHE_DIR (ccache --print-stats).
ccache_stat() {
    CCACHE_DIR=$DATA/apps/c-make/build-cache/dir/ccache ccache --print-stats | awk -v key="$1" '$1 == key { print $2 }'
}
ccache_hits() { echo $(($(ccache_stat direct_cache_hit) + $(ccache_stat preprocessed_cache_hit))); }
assert_true "c: make built ./greeter in the release" test -x "$(release_dir c-make v1)/greeter"
assert_eq "0 2" "$(ccache_hits) $(ccache_stat cache_miss)" "c v1: ccache compiled main.c and http.c (2 misses, no hit)"
REPO=$TEST_TMP/repos/c-make
sed -i 's/built by make/built by make again/' "$REPO/main.c"
commit_and_deploy c-make "a new text"
assert_eq "1 3" "$(ccache_hits) $(ccache_stat cache_miss)" \
    "c v2: http.c, unchanged, came from ccache in another release folder (1 hit); main.c was compiled (1 miss more)"
expect_serving c-make "hello from c, built by make again" "c v2: the new build answers"

# --- --engine auto asks the agents it knows ----------------------------------------------
app_repo node-plain
assert_exit 0 init_cmd --host "$AGENT_URL" --json
assert_jq "$OUT" ".variant == \"process\" and (.variant_reason | contains(\"$AGENT_URL has no container engine\"))" \
    "--host of a process-engine agent: asked, written for the process engine"
assert_false "asked: no Dockerfile" test -e "$REPO/Dockerfile"
assert_exit 0 init_cmd --host "$AGENT_URL" --force
assert_contains "$OUT" "==> For the process engine: $AGENT_URL has no container engine (--engine process)" \
    "human output: says which agent said so"
# DEPLOYCTL_HOST is asked the same way.
app_repo go-stdlib
assert_exit 0 env DEPLOYCTL_HOST="$AGENT_URL" "$DEPLOYCTL_BIN" -C "$REPO" init --json
assert_jq "$OUT" '.variant == "process"' "DEPLOYCTL_HOST: asked too"
# The target of the deploy.toml that --force replaces is asked too.
app_repo go-stdlib
printf 'app = "clock"\n[targets.production]\nhosts = ["%s"]\n' "$AGENT_URL" >"$REPO/deploy.toml"
assert_exit 0 init_cmd --force --json
assert_jq "$OUT" '.variant == "process"' "the existing deploy.toml's target: asked too"
# An agent that does not answer: the container template, saying so and how to pick process.
app_repo go-stdlib
assert_exit 0 init_cmd --host http://127.0.0.1:1 --json
assert_jq "$OUT" '.variant == "container" and ([.files[].path] == ["deploy.toml", "Dockerfile"])' \
    "an unreachable agent: the container template"
assert_jq "$OUT" '.notes | any(contains("could not ask the agents which engine they run") and contains("--engine process"))' \
    "an unreachable agent: a note says so, and how to pick the process engine"
# --engine docker writes the Dockerfile whatever the agents run, without asking.
app_repo go-stdlib
assert_exit 0 init_cmd --engine docker --host http://127.0.0.1:1 --json
assert_jq "$OUT" '.variant == "container" and .variant_reason == "--engine docker" and (.notes | all(contains("could not ask") | not))' \
    "--engine docker: not asked"

# --- a Dockerfile of the user's own: not a candidate for --engine process ------------------
app_repo node-plain
printf 'FROM node:20-slim\nCMD ["node", "server.js"]\n' >"$REPO/Dockerfile"
assert_exit 0 init_cmd --engine process --json
assert_jq "$OUT" '.template == "node-server" and (.notes | any(contains("remove it (git rm Dockerfile)")))' \
    "--engine process looks past a Dockerfile, and says agents with docker would build it"
assert_exit 2 init_cmd --engine process --template dockerfile --force
assert_contains "$ERR" "template dockerfile needs a container engine" "--template dockerfile --engine process: refused"
assert_exit 2 init_cmd --engine kubernetes
assert_contains "$ERR" "--engine" "an unknown engine: a usage error"

log "all $CHECKS checks passed"
