// deployctl init: detection on the fixture folders of tests/fixtures/init/,
// every template rendered and parsed, and the command's refusals.

#include <cli/init/detect.hpp>
#include <cli/init/templates.hpp>
#include <common/config.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>
#include <tests/unit/cli_run.hpp>
#include <tests/unit/temp_dir.hpp>

#include "fixtures.hpp"

namespace {

namespace fs = std::filesystem;
using cli::init::Detection;

const fs::path k_fixtures = test::fixtures_dir() / "init";

Detection detect_fixture(const std::string& name) {
    auto found = cli::init::detect(k_fixtures / name);
    REQUIRE_MESSAGE(found.ok(), name);
    REQUIRE_MESSAGE(found->has_value(), name << ": nothing detected");
    return std::move(**found);
}

bool mentions(const std::vector<std::string>& lines, const std::string& text) {
    for (const auto& line : lines)
        if (line.find(text) != std::string::npos)
            return true;
    return false;
}

// The files init would write for `d`, with the default values under it.
std::vector<cli::init::RenderedFile>
render(const Detection& d, const std::string& app,
       cli::init::Engine engine = cli::init::Engine::container) {
    auto vars = cli::init::default_vars(d.template_name);
    for (const auto& [key, value] : d.vars)
        vars[key] = value;
    vars["app"] = app;
    auto info = cli::init::find_template(d.template_name);
    REQUIRE(info);
    auto files = cli::init::render_template(*info, vars, engine);
    REQUIRE_MESSAGE(files.ok(), (files.ok() ? "" : files.error().message));
    return std::move(*files);
}

std::string dockerfile_of(const std::vector<cli::init::RenderedFile>& files) {
    for (const auto& f : files)
        if (f.name == "Dockerfile")
            return f.content;
    return {};
}

} // namespace

TEST_CASE("init detects the template of each fixture folder, with its evidence") {
    struct Case {
        const char* fixture;
        const char* template_name;
        const char* evidence; // a line of the evidence contains this
    };
    const Case cases[] = {
        {"dockerfile-node", "dockerfile", "Dockerfile: FROM node:22-slim"},
        {"node-next", "node-next", "package.json: \"next\" in dependencies"},
        {"node-vite", "node-static", "package.json: \"vite\" in devDependencies"},
        {"node-cra", "node-static", "\"react-scripts\" in dependencies"},
        {"node-express", "node-server", "package.json: \"express\" in dependencies"},
        {"node-fastify", "node-server", "\"fastify\" in dependencies"},
        {"node-vite-express", "node-server", "\"express\" in dependencies"},
        {"python-flask", "python-flask", "requirements.txt line 2: \"flask\""},
        {"python-django", "python-django", "requirements.txt line 1: \"django\""},
        {"python-fastapi-pyproject", "python-fastapi",
         "pyproject.toml [project] dependencies: \"fastapi\""},
        {"go", "go", "go.mod: module github.com/acme/hello-api, go 1.22"},
        {"go-cmd", "go", "cmd/api: package main"},
        {"php-laravel", "php", "composer.json: \"laravel/framework\" in require"},
        {"static", "static", "index.html: present"},
        {"node-tooling-static", "static", "index.html: present"},
        {"node-plain", "node-server", "package.json: scripts.start \"node server.js\""},
        {"python-plain", "python", "main.py: present (python main.py starts the app)"},
        {"go-stdlib", "go", "go.mod: module example.com/clock, go 1.19"},
        {"php-plain", "php", "public/index.php: present"},
        {"rust", "rust", "Cargo.toml: [package] name = \"rusty-clock\""},
        {"rust-bin", "rust", "Cargo.toml: the binary billing-server ([[bin]] name;"},
        {"rust-nolock", "rust", "src/main.rs, named after the package"},
        {"rust-workspace", "rust", "Cargo.toml: a [workspace] of 3 members, no [package]"},
        {"c-make", "c-make", "Makefile: present, with C or C++ sources (http.c, main.c)"},
        {"c-make-all", "c-make",
         "Makefile line 3: all: prog, the default goal's first prerequisite"},
        {"c-make-unknown", "c-make", "Makefile: present, with C or C++ sources (src/main.c)"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.fixture);
        auto d = detect_fixture(c.fixture);
        CHECK(d.template_name == c.template_name);
        CHECK_MESSAGE(mentions(d.evidence, c.evidence), d.evidence.front());
    }
}

TEST_CASE("init explains the ambiguous folders") {
    SUBCASE("a Dockerfile wins over package.json, and says so") {
        auto d = detect_fixture("dockerfile-node");
        CHECK(d.template_name == "dockerfile");
        CHECK(mentions(d.evidence, "package.json also looks like Node.js (Express): the "
                                   "Dockerfile wins"));
        CHECK(d.vars.at("port") == "5000"); // EXPOSE 5000
    }
    SUBCASE("vite and express: the server, which also builds its front-end") {
        auto d = detect_fixture("node-vite-express");
        CHECK(d.stack == "Node.js (Express)");
        CHECK(mentions(d.evidence, "\"vite\" in devDependencies too"));
        // `NODE_ENV=production node server.js` is not a plain `node FILE`.
        CHECK(d.vars.at("node_cmd") == R"(["npm", "start"])");
    }
    SUBCASE("package.json for tooling only, and an index.html: a static site") {
        auto d = detect_fixture("node-tooling-static");
        CHECK(d.vars.at("static_dir") == ".");
    }
}

TEST_CASE("init learns the placeholders from the files") {
    SUBCASE("Node.js: package manager, start command, engines, static folder") {
        auto express = detect_fixture("node-express");
        CHECK(express.vars.at("install_command") == "npm ci");
        CHECK(express.vars.at("package_files") == "package.json package-lock.json");
        CHECK(express.vars.at("node_cmd") == R"(["node", "src/index.js"])");
        CHECK(express.vars.at("node_version") == "20");
        CHECK(express.app == "orders_API");
        auto fastify = detect_fixture("node-fastify");
        CHECK(fastify.vars.at("install_command").find("pnpm install") != std::string::npos);
        CHECK(fastify.vars.at("node_cmd") == R"(["node", "app.js"])");
        auto vite = detect_fixture("node-vite");
        CHECK(vite.vars.at("static_dir") == "dist");
        CHECK(vite.vars.at("spa") == "true");
        CHECK(
            vite.vars.at("process_build") ==
            R"('YARN_CACHE_FOLDER="$CACHE_DIR/yarn" yarn install --frozen-lockfile && yarn run build')");
        CHECK(detect_fixture("node-cra").vars.at("static_dir") == "build");
        CHECK(detect_fixture("node-next").app == "Storefront");
    }
    SUBCASE("Python: the app object, the Django project, requirements or pyproject") {
        auto flask = detect_fixture("python-flask");
        CHECK(flask.vars.at("python_cmd").find("gunicorn app:application") != std::string::npos);
        CHECK(flask.vars.at("python_install").find("pip install -r requirements.txt gunicorn") !=
              std::string::npos);
        auto django = detect_fixture("python-django");
        CHECK(django.vars.at("python_cmd").find("gunicorn blog.wsgi") != std::string::npos);
        auto fastapi = detect_fixture("python-fastapi-pyproject");
        CHECK(fastapi.vars.at("python_cmd").find("uvicorn app.main:api") != std::string::npos);
        CHECK(fastapi.vars.at("python_install").find("pip install . uvicorn") != std::string::npos);
    }
    SUBCASE("Go and PHP") {
        auto go = detect_fixture("go");
        CHECK(go.vars.at("go_version") == "1.22");
        CHECK(go.vars.at("go_package") == ".");
        CHECK(go.app == "hello-api");
        CHECK(detect_fixture("go-cmd").vars.at("go_package") == "./cmd/api");
        auto php = detect_fixture("php-laravel");
        CHECK(php.vars.at("php_docroot") == "/public");
        CHECK(php.stack == "PHP (Laravel)");
    }
    SUBCASE("Rust: the package's name, its binary, Cargo.lock") {
        auto rust = detect_fixture("rust");
        CHECK(rust.app == "rusty-clock");
        CHECK(rust.vars.at("rust_bin") == "rusty-clock");
        CHECK(rust.vars.at("cargo_locked") == " --locked");
        CHECK(mentions(rust.evidence, "Cargo.lock: present (cargo build --locked"));
        // [[bin]] names the program, not the package; the others are said.
        auto bin = detect_fixture("rust-bin");
        CHECK(bin.app == "billing");
        CHECK(bin.vars.at("rust_bin") == "billing-server");
        CHECK(mentions(bin.notes, "builds other binaries too (billing-admin)"));
        CHECK(bin.vars.at("rust_needs") ==
              "Rust's cargo, rustc 1.70 or newer (Cargo.toml's rust-version)");
        auto nolock = detect_fixture("rust-nolock");
        CHECK(nolock.vars.at("cargo_locked") == "");
        CHECK(mentions(nolock.notes, "no Cargo.lock"));
        CHECK(nolock.vars.at("rust_needs") == "Rust's cargo, rustc 1.85 or newer (edition 2024)");
        CHECK(cli::init::app_name_from(nolock.app) == "notes-api");
    }
    SUBCASE("Rust: a workspace without [package]: the first member with a program") {
        auto workspace = detect_fixture("rust-workspace");
        CHECK(workspace.app.empty()); // the folder's name
        CHECK(workspace.vars.at("rust_bin") == "shop-api");
        CHECK(mentions(workspace.evidence, "crates/api/Cargo.toml: the binary shop-api"));
        CHECK(mentions(workspace.notes, "several programs (shop-api in crates/api, shop-worker "
                                        "in crates/worker): the build copies the first"));
    }
    SUBCASE("C and C++: the program the Makefile builds") {
        auto c = detect_fixture("c-make");
        CHECK(c.stack == "C/C++ (make)");
        CHECK(c.vars.at("c_program") == "greeter");
        CHECK(mentions(c.evidence, "Makefile line 5: greeter, the default goal (the run command "
                                   "starts ./greeter)"));
        CHECK(mentions(c.notes, "the run command starts ./greeter, the program init read from the "
                                "Makefile: check that it is the one make builds"));
        CHECK(detect_fixture("c-make-all").vars.at("c_program") == "prog");
        auto unknown = detect_fixture("c-make-unknown");
        CHECK(unknown.vars.at("c_program") == "PROGRAM");
        CHECK(mentions(unknown.notes, "no program found in the Makefile"));
        CHECK_FALSE(mentions(unknown.notes, "the run command starts"));
    }
}

namespace {

// Detection in a folder holding `files` (name, content).
Detection detect_files(const std::vector<std::pair<std::string, std::string>>& files) {
    test::TempDir dir;
    for (const auto& [name, content] : files) {
        fs::create_directories((dir.path() / name).parent_path());
        REQUIRE(common::atomic_write_file(dir.path() / name, content).ok());
    }
    auto found = cli::init::detect(dir.path());
    REQUIRE_MESSAGE(found.ok(), (found.ok() ? "" : found.error().message));
    REQUIRE(found->has_value());
    return std::move(**found);
}

} // namespace

TEST_CASE("init reads the program's name from a Makefile, or says it found none") {
    struct Case {
        const char* makefile;
        const char* program; // "PROGRAM": none found
    };
    const Case cases[] = {
        // The default goal when it is a file; the first prerequisite of `all` or a .PHONY one.
        {"server: main.o http.o\n\t$(CC) -o $@ $^\nclean:\n\trm -f server\n", "server"},
        {"all: server client\nserver: main.c\nclient: main.c\n", "server"},
        {".PHONY: build\nbuild: bin/app\nbin/app: main.c\n", "bin/app"},
        {"all: \\\n    prog\n", "prog"}, // a line continued
        // Variables, expanded (also when set after their use); .DEFAULT_GOAL; patterns and
        // special targets are not goals.
        {"TARGET := $(NAME)\nall: $(TARGET)\nNAME = web\n", "web"},
        {".DEFAULT_GOAL := api\nclean:\n\trm -f api\napi: main.c\n", "api"},
        {"%.o: %.c\n\t$(CC) -c $<\n.SUFFIXES:\nsrv: main.o\n", "srv"},
        {"FLAGS = -O2\nPROG = hello\nhello: FLAGS += -g\n.PHONY: all\nall:\n\t$(CC) -o $(PROG) "
         "main.c\n",
         "hello"},
        {"BIN ::= out/tool\n.PHONY: all\nall:\n", "out/tool"},
        // What init cannot know, or is not a program: nothing, rather than a guess.
        {"TARGET = $(shell basename $(CURDIR))\nall: $(TARGET)\n", "PROGRAM"},
        {"all: $(MISSING)\n", "PROGRAM"},
        {"main.o: main.c\n", "PROGRAM"},
        {"all: libshop.a\n", "PROGRAM"},
        {"define HELP\nserver: x\nendef\n.PHONY: all\nall:\n", "PROGRAM"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.makefile);
        auto d = detect_files({{"Makefile", c.makefile}, {"src/main.c", "int main(void) {}\n"}});
        CHECK(d.template_name == "c-make");
        CHECK(d.vars.at("c_program") == c.program);
        auto files = render(d, "app", cli::init::Engine::process);
        auto config = common::parse_config(files[0].content, "deploy.toml");
        REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
        if (std::string(c.program) == "PROGRAM") {
            CHECK(config->run.command.starts_with("echo 'deployctl init found no program in the "
                                                  "Makefile: set [run] command in deploy.toml"));
            CHECK(config->run.command.ends_with("' >&2; exit 1"));
            CHECK(dockerfile_of(render(d, "app"))
                      .find("# deployctl init found no program in the "
                            "Makefile: replace PROGRAM") != std::string::npos);
        } else {
            CHECK(config->run.command == std::string("exec ./") + c.program);
        }
    }
    SUBCASE("a Makefile without C or C++ sources is not a C app") {
        test::TempDir dir;
        REQUIRE(common::atomic_write_file(dir.path() / "Makefile", "all:\n\techo hi\n").ok());
        auto found = cli::init::detect(dir.path());
        REQUIRE(found.ok());
        CHECK_FALSE(found->has_value());
    }
}

TEST_CASE("init on a Cargo.toml it cannot use: a config error, or a note and no binary") {
    SUBCASE("not TOML: the file and the place") {
        test::TempDir dir;
        REQUIRE(common::atomic_write_file(dir.path() / "Cargo.toml", "[package\n").ok());
        auto found = cli::init::detect(dir.path());
        REQUIRE_FALSE(found.ok());
        CHECK(found.error().kind == common::ErrorKind::config);
        CHECK(found.error().message.starts_with("Cargo.toml:1:"));
    }
    SUBCASE("a workspace of libraries only, or neither [package] nor [workspace]") {
        for (const auto& files :
             {std::vector<std::pair<std::string, std::string>>{
                  {"Cargo.toml", "[workspace]\nmembers = [\"core\", \"missing\", \"x/[ab]\"]\n"},
                  {"core/Cargo.toml", "[package]\nname = \"core\"\n"},
                  {"core/src/lib.rs", ""}},
              std::vector<std::pair<std::string, std::string>>{
                  {"Cargo.toml", "[profile.release]\n"}}}) {
            auto d = detect_files(files);
            CHECK(d.template_name == "rust");
            CHECK(mentions(d.notes, "no binary found in Cargo.toml"));
            auto files_written = render(d, "app", cli::init::Engine::process);
            auto config = common::parse_config(files_written[0].content, "deploy.toml");
            REQUIRE(config.ok());
            CHECK(
                config->build.command ==
                R"(CARGO_HOME="$CACHE_DIR/cargo" CARGO_TARGET_DIR="$CACHE_DIR/target" cargo build --release)");
            CHECK(config->run.command.starts_with("echo 'deployctl init found no program in "
                                                  "Cargo.toml"));
            CHECK(dockerfile_of(render(d, "app")).find("cp target/release/PROGRAM /app") !=
                  std::string::npos);
        }
    }
}

TEST_CASE("init detects nothing in a folder without an app, and names a broken file") {
    auto empty = cli::init::detect(k_fixtures / "empty");
    REQUIRE(empty.ok());
    CHECK_FALSE(empty->has_value());
    auto broken = cli::init::detect(k_fixtures / "bad-package-json");
    REQUIRE_FALSE(broken.ok());
    CHECK(broken.error().kind == common::ErrorKind::config);
    CHECK(broken.error().message.find("package.json") != std::string::npos);
}

TEST_CASE("every template renders a deploy.toml that parses, and a real Dockerfile") {
    auto list = cli::init::list_templates();
    REQUIRE(list.size() == 13);
    for (const auto& info : list) {
        CAPTURE(info.name);
        CHECK_FALSE(info.description.empty());
        Detection d;
        d.template_name = info.name;
        auto files = render(d, "my-app");
        REQUIRE(files.size() == (info.has_dockerfile ? 2u : 1u));
        CHECK(files[0].name == "deploy.toml");
        auto config = common::parse_config(files[0].content, "deploy.toml");
        REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
        CHECK(config->app == "my-app");
        CHECK(files[0].content.find("docs/deploy-toml.md") != std::string::npos);
        for (const auto& f : files)
            CHECK(f.content.find("{{") == std::string::npos);
        if (info.name == "static" || info.name == "node-static") {
            CHECK(config->static_site.has_value());
            continue;
        }
        CHECK(config->build.dockerfile == "Dockerfile");
        CHECK(config->run.port > 0);
        // The build cache is the process engine's: an image build caches its layers.
        CHECK(config->build.cache.empty());
        for (const auto& f : files)
            CHECK(f.content.find("$CACHE_DIR") == std::string::npos);
        if (!info.has_dockerfile)
            continue;
        auto dockerfile = files[1].content;
        CHECK(dockerfile.find("FROM ") != dockerfile.rfind("FROM ")); // multi-stage
        CHECK(dockerfile.find("\nUSER ") != std::string::npos);       // not root
        CHECK(dockerfile.find("PORT=") != std::string::npos);
    }
}

TEST_CASE("every fixture renders files that parse") {
    for (const auto& entry : fs::directory_iterator(k_fixtures)) {
        auto found = cli::init::detect(entry.path());
        if (!found.ok() || !found->has_value())
            continue;
        CAPTURE(entry.path().filename().string());
        auto files = render(**found, "fixture");
        auto config = common::parse_config(files[0].content, "deploy.toml");
        CHECK_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
    }
    auto flask = render(detect_fixture("python-flask"), "x");
    CHECK(dockerfile_of(flask).find("CMD exec gunicorn app:application --bind \"$HOST:$PORT\"") !=
          std::string::npos);
}

TEST_CASE("the process engine's deploy.toml of each stack: build and run commands, no Dockerfile") {
    using cli::init::Engine;
    // make, with ccache through CC and CXX in its environment when ccache is there.
    const char* k_make =
        R"sh(export CCACHE_DIR="$CACHE_DIR/ccache" CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true; if command -v ccache >/dev/null; then export CC="ccache ${CC:-cc}" CXX="ccache ${CXX:-c++}"; fi; make -j"$(nproc)")sh";
    struct Case {
        const char* fixture;
        const char* build;              // build.command
        const char* run;                // run.command
        const char* needs;              // in the template's needs line
        std::vector<std::string> cache; // build.cache
        const char* why;                // in the comment on build.cache
    };
    const Case cases[] = {
        // A lockfile: npm install, which keeps the node_modules restored from the build cache
        // (npm ci deletes it), and says why; a build script: npm run build; the start script
        // is `node FILE`.
        {"node-plain",
         R"(npm_config_cache="$CACHE_DIR/npm" npm install --no-audit --no-fund && npm run build && npm prune --omit=dev)",
         "NODE_ENV=production exec node server.js",
         "Node.js {{node_min}}+ and {{package_manager}}",
         {"node_modules"},
         "It is `npm install`, not `npm ci`, which deletes node_modules first"},
        // No lockfile: npm install; no build script: no build step.
        {"node-vite-express",
         R"(npm_config_cache="$CACHE_DIR/npm" npm install --no-audit --no-fund && npm run build && npm prune --omit=dev)",
         "NODE_ENV=production exec npm start",
         "Node.js",
         {"node_modules"},
         "node_modules: the install only adds and removes what changed"},
        {"node-express",
         R"(npm_config_cache="$CACHE_DIR/npm" npm install --no-audit --no-fund && npm prune --omit=dev)",
         "NODE_ENV=production exec node src/index.js",
         "Node.js",
         {"node_modules"},
         "package-lock.json pins"},
        // pnpm: its store in $CACHE_DIR for the install and the prune, no node_modules kept.
        {"node-fastify",
         R"(export npm_config_store_dir="$CACHE_DIR/pnpm" pnpm_config_store_dir="$CACHE_DIR/pnpm" && pnpm install --frozen-lockfile && pnpm prune --prod)",
         "NODE_ENV=production exec node app.js",
         "Node.js",
         {},
         "No node_modules: pnpm links it from its store in $CACHE_DIR/pnpm"},
        {"node-next",
         R"(npm_config_cache="$CACHE_DIR/npm" npm install --no-audit --no-fund && npm run build && npm prune --omit=dev)",
         R"(exec node_modules/.bin/next start --hostname "$HOST" --port "$PORT")",
         "Node.js",
         {"node_modules", ".next/cache"},
         ".next/cache: what next build compiled before"},
        // A virtual environment does not move between release folders: pip's cache only.
        {"python-flask",
         R"(python3 -m venv .venv && PIP_CACHE_DIR="$CACHE_DIR/pip" .venv/bin/pip install -r requirements.txt gunicorn)",
         R"(exec .venv/bin/gunicorn app:application --bind "$HOST:$PORT" --workers 2 --access-logfile -)",
         "Python 3 with venv",
         {},
         "a virtual environment cannot move to another release folder"},
        {"python-django",
         R"(python3 -m venv .venv && PIP_CACHE_DIR="$CACHE_DIR/pip" .venv/bin/pip install -r requirements.txt gunicorn && { )"
         ".venv/bin/python manage.py collectstatic --noinput || echo 'collectstatic skipped: set "
         "STATIC_ROOT in settings.py'; }",
         R"(exec .venv/bin/gunicorn blog.wsgi --bind "$HOST:$PORT" --workers 2 --access-logfile -)",
         "Python 3 with venv",
         {},
         "$CACHE_DIR/pip"},
        {"python-fastapi-pyproject",
         R"(python3 -m venv .venv && PIP_CACHE_DIR="$CACHE_DIR/pip" .venv/bin/pip install . uvicorn)",
         R"(exec .venv/bin/uvicorn app.main:api --host "$HOST" --port "$PORT" --proxy-headers)",
         "Python 3 with venv",
         {},
         "$CACHE_DIR/pip"},
        {"python-plain",
         R"(python3 -m venv .venv && PIP_CACHE_DIR="$CACHE_DIR/pip" .venv/bin/pip install -r requirements.txt)",
         "exec .venv/bin/python main.py",
         "Python 3 with venv",
         {},
         "$CACHE_DIR/pip"},
        // Go's build and module caches; -modcacherw: a module cache the agent can delete.
        {"go-stdlib",
         R"(GOCACHE="$CACHE_DIR/go-build" GOMODCACHE="$CACHE_DIR/gomod" go build -modcacherw -o app .)",
         "exec ./app",
         "Go on the agent's PATH",
         {},
         "-modcacherw leaves the module cache writable"},
        {"go-cmd",
         R"(GOCACHE="$CACHE_DIR/go-build" GOMODCACHE="$CACHE_DIR/gomod" go build -modcacherw -o app ./cmd/api)",
         "exec ./app",
         "Go",
         {},
         "Go keeps its build and module caches in $CACHE_DIR"},
        {"php-laravel",
         R"(COMPOSER_CACHE_DIR="$CACHE_DIR/composer" composer install --no-dev --no-interaction --prefer-dist --optimize-autoloader)",
         R"(PHP_CLI_SERVER_WORKERS=4 exec php -S "$HOST:$PORT" -t public)",
         "PHP and Composer",
         {},
         "Composer installs vendor/ from its cache in $CACHE_DIR/composer"},
        // cargo's downloads and target directory in $CACHE_DIR, the binary copied out of it;
        // --locked with a Cargo.lock only.
        {"rust",
         R"(CARGO_HOME="$CACHE_DIR/cargo" CARGO_TARGET_DIR="$CACHE_DIR/target" cargo build --release --locked && cp "$CACHE_DIR/target/release/rusty-clock" app)",
         "exec ./app",
         "{{rust_needs}} on the agent's PATH, not only in a user's ~/.cargo/bin (Debian: cargo)",
         {},
         "the dependencies\n# compile once"},
        {"rust-bin",
         R"(CARGO_HOME="$CACHE_DIR/cargo" CARGO_TARGET_DIR="$CACHE_DIR/target" cargo build --release --locked && cp "$CACHE_DIR/target/release/billing-server" app)",
         "exec ./app",
         "{{rust_needs}}",
         {},
         "(CARGO_TARGET_DIR) in $CACHE_DIR, whose path is the same for every build"},
        {"rust-nolock",
         R"(CARGO_HOME="$CACHE_DIR/cargo" CARGO_TARGET_DIR="$CACHE_DIR/target" cargo build --release && cp "$CACHE_DIR/target/release/notes_api" app)",
         "exec ./app",
         "{{rust_needs}}",
         {},
         "copied out of $CACHE_DIR/target into the release"},
        // ccache through CC and CXX in the environment, its objects in $CACHE_DIR; the
        // program the Makefile names.
        {"c-make",
         k_make,
         "exec ./greeter",
         "make and a C or C++ compiler on the agent's PATH (Debian: build-essential), and ccache",
         {},
         "ccache keeps the compiled objects in $CACHE_DIR/ccache"},
        {"c-make-all", k_make, "exec ./prog", "make", {}, "unless the Makefile sets them itself"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.fixture);
        auto found = cli::init::detect(k_fixtures / c.fixture, Engine::process);
        REQUIRE(found.ok());
        REQUIRE(found->has_value());
        auto files = render(**found, "my-app", Engine::process);
        REQUIRE(files.size() == 1); // no Dockerfile
        CHECK(files[0].name == "deploy.toml");
        auto config = common::parse_config(files[0].content, "deploy.toml");
        REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
        CHECK(config->build.dockerfile.empty());
        CHECK(config->build.command == c.build);
        CHECK(config->run.command == c.run);
        CHECK(config->env.at("HOST") == "127.0.0.1"); // where the proxy reaches the app
        CHECK(files[0].content.find("--engine process") != std::string::npos);
        // The build cache: its paths, the default size (commented out), and why.
        CHECK(config->build.cache == c.cache);
        CHECK(config->build.cache_max == (2ULL << 30));
        CHECK(files[0].content.find("# cache_max = \"2G\"") != std::string::npos);
        CHECK(files[0].content.find("docs/build-cache.md") != std::string::npos);
        CHECK_MESSAGE(files[0].content.find(c.why) != std::string::npos, files[0].content);
        auto info = cli::init::find_template((*found)->template_name);
        REQUIRE(info);
        CHECK(info->has_process);
        CHECK(info->needs.find(c.needs) != std::string::npos);
    }
}

TEST_CASE("the Dockerfiles of Rust and C: the program the detection found, built, copied") {
    auto rust = dockerfile_of(render(detect_fixture("rust-bin"), "billing"));
    CHECK(rust.find("FROM rust:1-bookworm AS build") != std::string::npos);
    CHECK(rust.find("RUN cargo build --release --locked && cp target/release/billing-server "
                    "/app\n") != std::string::npos);
    CHECK(rust.find("PROGRAM") == std::string::npos);
    auto nolock = dockerfile_of(render(detect_fixture("rust-nolock"), "notes"));
    CHECK(nolock.find("RUN cargo build --release && cp target/release/notes_api /app\n") !=
          std::string::npos);
    auto c = dockerfile_of(render(detect_fixture("c-make"), "greeter"));
    CHECK(c.find("build-essential") != std::string::npos);
    CHECK(c.find("RUN make -j\"$(nproc)\"") != std::string::npos);
    CHECK(c.find("\nCOPY --from=build /src/greeter /app\n") != std::string::npos);
    CHECK(c.find("FROM debian:bookworm-slim") != std::string::npos);
}

TEST_CASE("init: a static build with Node.js keeps its build cache on every engine, no prune") {
    using cli::init::Engine;
    for (auto engine : {Engine::container, Engine::process}) {
        auto vite = cli::init::detect(k_fixtures / "node-vite", engine); // yarn.lock
        REQUIRE((vite.ok() && vite->has_value()));
        CHECK((*vite)->template_name == "node-static");
        auto files = render(**vite, "site", engine);
        REQUIRE(files.size() == 1);
        auto config = common::parse_config(files[0].content, "deploy.toml");
        REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
        CHECK(
            config->build.command ==
            R"(YARN_CACHE_FOLDER="$CACHE_DIR/yarn" yarn install --frozen-lockfile && yarn run build)");
        CHECK(config->build.cache == std::vector<std::string>{"node_modules"});
        CHECK(files[0].content.find("node_modules: the install only adds") != std::string::npos);
        CHECK(files[0].content.find("docs/build-cache.md") != std::string::npos);
    }
    auto cra = cli::init::detect(k_fixtures / "node-cra"); // no lockfile: npm
    REQUIRE((cra.ok() && cra->has_value()));
    auto config = common::parse_config(render(**cra, "site")[0].content, "deploy.toml");
    REQUIRE(config.ok());
    CHECK(config->build.command ==
          R"(npm_config_cache="$CACHE_DIR/npm" npm install --no-audit --no-fund && npm run build)");
    CHECK(config->build.cache == std::vector<std::string>{"node_modules"});
}

TEST_CASE("every template renders for the process engine, or says it needs a container engine") {
    using cli::init::Engine;
    for (const auto& info : cli::init::list_templates()) {
        CAPTURE(info.name);
        // Only the user's own Dockerfile needs a container engine.
        CHECK(info.supports(Engine::process) == (info.name != "dockerfile"));
        if (!info.supports(Engine::process))
            continue;
        Detection d;
        d.template_name = info.name;
        auto files = render(d, "my-app", Engine::process);
        REQUIRE(files.size() == 1);
        auto config = common::parse_config(files[0].content, "deploy.toml");
        REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
        CHECK(config->build.dockerfile.empty());
        CHECK((config->static_site.has_value() || !config->run.command.empty()));
        CHECK(files[0].content.find("{{") == std::string::npos);
        // Every build keeps its package manager's or compiler's cache in $CACHE_DIR.
        if (!config->build.command.empty())
            CHECK(config->build.command.find("\"$CACHE_DIR/") != std::string::npos);
        auto needs = cli::init::render(info.needs, cli::init::default_vars(info.name));
        REQUIRE(needs.ok());
        CHECK(needs->find("{{") == std::string::npos);
    }
}

TEST_CASE("the process engine looks past a Dockerfile to the stack beside it") {
    using cli::init::Engine;
    auto container = cli::init::detect(k_fixtures / "dockerfile-node", Engine::container);
    REQUIRE((container.ok() && container->has_value()));
    CHECK((*container)->template_name == "dockerfile");
    auto process = cli::init::detect(k_fixtures / "dockerfile-node", Engine::process);
    REQUIRE((process.ok() && process->has_value()));
    CHECK((*process)->template_name == "node-server");
}

TEST_CASE("commands become TOML strings that read back as written") {
    for (const std::string command : {"npm ci", R"(exec x --bind "$HOST:$PORT")",
                                      R"(echo 'it''s' "quoted" \ back)", "a	b"}) {
        CAPTURE(command);
        auto text = "app = \"a\"\n[run]\ncommand = " + cli::init::toml_string(command) + "\n";
        auto config = common::parse_config(text, "deploy.toml");
        REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
        CHECK(config->run.command == command);
    }
    CHECK(cli::init::toml_string("npm ci") == "\"npm ci\"");
    CHECK(cli::init::toml_string(R"(a "b")") == R"('a "b"')");
}

TEST_CASE("app names are made valid") {
    CHECK(cli::init::app_name_from("My Shop") == "my-shop");
    CHECK(cli::init::app_name_from("orders_API") == "orders-api");
    CHECK(cli::init::app_name_from("2024-site") == "site");
    CHECK(cli::init::app_name_from("--hello--") == "hello");
    CHECK(cli::init::app_name_from("123") == "");
    CHECK(cli::init::app_name_from(std::string(80, 'a')).size() == 63);
    for (const char* raw : {"Café Bar", "a.b.c", "x__y", "UPPER"})
        CHECK(common::is_valid_app_name(cli::init::app_name_from(raw)));
}

namespace {

// `deployctl init DIR OPTIONS...`, output in JSON.
struct InitRun : test::CliRun {
    common::Status run(const std::string& dir, const std::vector<std::string>& options) {
        std::vector<std::string> args{"init", dir};
        args.insert(args.end(), options.begin(), options.end());
        return test::CliRun::run(args);
    }
};

} // namespace

TEST_CASE("init writes the files, refuses to replace them without --force") {
    test::TempDir dir;
    fs::copy(k_fixtures / "node-express", dir.path(), fs::copy_options::recursive);
    const auto folder = dir.path().string();
    std::vector<std::string> options;

    InitRun first;
    REQUIRE(first.run(folder, options).ok());
    auto event = nlohmann::json::parse(first.out.str());
    CHECK(event["event"] == "init");
    CHECK(event["template"] == "node-server");
    CHECK(event["app"] == "orders-api");
    CHECK(event["files"].size() == 2);
    CHECK(fs::exists(dir.path() / "Dockerfile"));

    SUBCASE("an existing file: exit 2, nothing written, not even the other file") {
        fs::remove(dir.path() / "Dockerfile");
        REQUIRE(common::atomic_write_file(dir.path() / "deploy.toml", "app = \"mine\"\n").ok());
        InitRun again;
        auto refused = again.run(folder, options);
        REQUIRE_FALSE(refused.ok());
        CHECK(common::exit_code(refused.error().kind) == 2);
        CHECK(refused.error().message.find("deploy.toml already exists") != std::string::npos);
        CHECK(*common::read_file(dir.path() / "deploy.toml") == "app = \"mine\"\n");
        CHECK_FALSE(fs::exists(dir.path() / "Dockerfile"));
    }
    SUBCASE("--force replaces them") {
        REQUIRE(common::atomic_write_file(dir.path() / "deploy.toml", "app = \"mine\"\n").ok());
        options.push_back("--force");
        InitRun again;
        REQUIRE(again.run(folder, options).ok());
        auto replaced = nlohmann::json::parse(again.out.str());
        CHECK(replaced["files"][0]["replaced"] == true);
        CHECK(common::load_config(dir.path() / "deploy.toml")->app == "orders-api");
    }
    SUBCASE("--template overrides, an unknown one is a usage error with a suggestion") {
        options = {"--force", "--template", "node-statc"};
        InitRun unknown;
        auto bad = unknown.run(folder, options);
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().kind == common::ErrorKind::usage);
        CHECK(bad.error().message.find("did you mean 'node-static'?") != std::string::npos);
        options.back() = "node-static";
        InitRun chosen;
        REQUIRE(chosen.run(folder, options).ok());
        auto forced = nlohmann::json::parse(chosen.out.str());
        CHECK(forced["detected"] == false);
        CHECK(common::load_config(dir.path() / "deploy.toml")->static_site.has_value());
    }
}

TEST_CASE("init --engine process writes deploy.toml only; auto without agents, a Dockerfile") {
    test::TempDir dir;
    fs::copy(k_fixtures / "go-stdlib", dir.path(), fs::copy_options::recursive);
    const auto folder = dir.path().string();

    SUBCASE("--engine process") {
        InitRun run;
        REQUIRE(run.run(folder, {"--engine", "process"}).ok());
        auto event = nlohmann::json::parse(run.out.str());
        CHECK(event["variant"] == "process");
        CHECK(event["variant_reason"] == "--engine process");
        CHECK(event["engine"] == "any");
        CHECK(event["files"].size() == 1);
        CHECK(event["needs"].get<std::string>().find("go.mod says go 1.19") != std::string::npos);
        CHECK_FALSE(fs::exists(dir.path() / "Dockerfile"));
    }
    SUBCASE("auto, no agent known: the container template, and how to pick the process one") {
        // A deploy.toml without targets names no agent: nothing to ask, nothing to say.
        REQUIRE(common::atomic_write_file(dir.path() / "deploy.toml", "app = \"clock\"\n").ok());
        InitRun run;
        REQUIRE(run.run(folder, {"--force"}).ok());
        auto event = nlohmann::json::parse(run.out.str());
        CHECK(event["variant"] == "container");
        CHECK(event["variant_reason"] == "");
        CHECK(fs::exists(dir.path() / "Dockerfile"));
        CHECK(event["notes"].dump().find("deployctl init --engine process") != std::string::npos);
        CHECK(event["notes"].dump().find("could not ask") == std::string::npos);
    }
}

TEST_CASE("init looks past a Dockerfile it wrote itself") {
    test::TempDir dir;
    fs::copy(k_fixtures / "python-flask", dir.path(), fs::copy_options::recursive);
    auto first = detect_fixture("python-flask");
    auto files = render(first, "x");
    REQUIRE(common::atomic_write_file(dir.path() / "Dockerfile", dockerfile_of(files)).ok());
    auto again = cli::init::detect(dir.path());
    REQUIRE(again.ok());
    REQUIRE(again->has_value());
    CHECK((*again)->template_name == "python-flask");
}
