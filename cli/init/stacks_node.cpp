// Node.js: package.json's dependencies and scripts pick Next.js, a server
// (Express, Fastify, ...) or a static build (Vite, Create React App, Astro, ...).

#include <cli/init/stacks.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>

namespace cli::init::stacks {

namespace {

using nlohmann::json;

struct StaticBuilder {
    const char* package;
    const char* name;
    const char* dir; // what its build writes
    bool spa;
};

constexpr std::array k_static_builders{
    StaticBuilder{"vite", "Vite", "dist", true},
    StaticBuilder{"react-scripts", "Create React App", "build", true},
    StaticBuilder{"@vue/cli-service", "Vue CLI", "dist", true},
    StaticBuilder{"astro", "Astro", "dist", false},
    StaticBuilder{"gatsby", "Gatsby", "public", false},
    StaticBuilder{"parcel", "Parcel", "dist", false},
};

constexpr std::array k_servers{
    std::pair{"express", "Express"},
    std::pair{"fastify", "Fastify"},
    std::pair{"koa", "Koa"},
    std::pair{"@hapi/hapi", "hapi"},
    std::pair{"@nestjs/core", "NestJS"},
    std::pair{"@hono/node-server", "Hono"},
    std::pair{"restify", "restify"},
};

// Where a package is declared: "dependencies", "devDependencies" or empty.
std::string declared_in(const json& pkg, std::string_view name) {
    for (const char* section : {"dependencies", "devDependencies"}) {
        auto it = pkg.find(section);
        if (it != pkg.end() && it->is_object() && it->contains(name))
            return section;
    }
    return {};
}

std::string script(const json& pkg, const char* name) {
    auto scripts = pkg.find("scripts");
    if (scripts == pkg.end() || !scripts->is_object())
        return {};
    auto it = scripts->find(name);
    return it != scripts->end() && it->is_string() ? it->get<std::string>() : std::string();
}

struct PackageManager {
    std::string name;     // "npm", "yarn", "pnpm"
    std::string lockfile; // empty: none
    std::string install;  // in the Dockerfile
    std::string run;      // "npm run", "yarn run", "pnpm run"
    std::string prune;    // drop the development dependencies ("" none)
    // On the agent (process.toml, node-static): the install with the package manager's own
    // cache in $CACHE_DIR (docs/build-cache.md), which keeps a node_modules restored from the
    // build cache (npm install, not npm ci: that deletes node_modules first).
    std::string agent_install;
    // [build] cache = ["node_modules"] (not with pnpm: see process_cache), and why.
    bool cache_node_modules = true;
    // In the Dockerfile: yarn and pnpm come with Node.js through corepack.
    std::string image_install() const {
        return install.starts_with("npm") ? install : "corepack enable && " + install;
    }
};

// npm's and yarn's caches and pnpm's store in $CACHE_DIR. pnpm's is exported: its prune needs
// the store its install used, and pnpm 11 reads pnpm_config_* where older ones read npm_config_*.
constexpr const char* k_npm_agent_install =
    R"(npm_config_cache="$CACHE_DIR/npm" npm install --no-audit --no-fund)";

PackageManager package_manager(const fs::path& dir) {
    if (exists(dir, "pnpm-lock.yaml"))
        return {"pnpm",
                "pnpm-lock.yaml",
                "pnpm install --frozen-lockfile",
                "pnpm run",
                "pnpm prune --prod",
                R"(export npm_config_store_dir="$CACHE_DIR/pnpm" )"
                R"(pnpm_config_store_dir="$CACHE_DIR/pnpm" && pnpm install --frozen-lockfile)",
                false};
    if (exists(dir, "yarn.lock"))
        return {"yarn",
                "yarn.lock",
                "yarn install --frozen-lockfile",
                "yarn run",
                "",
                R"(YARN_CACHE_FOLDER="$CACHE_DIR/yarn" yarn install --frozen-lockfile)"};
    if (exists(dir, "package-lock.json"))
        return {"npm",     "package-lock.json",    "npm ci",
                "npm run", "npm prune --omit=dev", k_npm_agent_install};
    return {"npm", "", "npm install", "npm run", "npm prune --omit=dev", k_npm_agent_install};
}

const PackageManager k_default_pm{
    "npm", "", "npm install", "npm run", "npm prune --omit=dev", k_npm_agent_install};

// [build] cache and why (templates/_shared/build-cache.toml says what the cache is):
// node_modules, which the install then only updates, and next build's own cache.
constexpr std::string_view k_node_modules =
    R"(# node_modules: the install only adds and removes what changed (after an upgrade of Node.js
# on the agent, `deployctl deploy --no-cache` once: addons built for the old one may stay).
)";
constexpr std::string_view k_npm_not_ci =
    R"(# It is `npm install`, not `npm ci`, which deletes node_modules first: npm install installs
# the versions package-lock.json pins all the same, but where package.json no longer matches
# the lockfile it updates the lockfile instead of failing.
)";
constexpr std::string_view k_pnpm_no_node_modules =
    R"(# No node_modules: pnpm links it from its store in $CACHE_DIR/pnpm in seconds, and one made
# in another release folder can make pnpm stop to ask before reinstalling, which a build
# without a terminal cannot answer.
)";

std::string process_cache(std::string_view template_name, const PackageManager& pm) {
    std::vector<std::string> paths;
    std::string why;
    if (pm.cache_node_modules) {
        paths.emplace_back("node_modules");
        why = k_node_modules;
        if (pm.name == "npm" && !pm.lockfile.empty())
            why += k_npm_not_ci;
    } else {
        why = k_pnpm_no_node_modules;
    }
    if (template_name == "node-next") {
        paths.emplace_back(".next/cache");
        why += "# .next/cache: what next build compiled before, which it reuses.\n";
    }
    if (paths.empty())
        return why;
    std::vector<std::string> quoted;
    for (const auto& path : paths)
        quoted.push_back(json(path).dump());
    return fmt::format("{}cache = [{}]\n", why, fmt::join(quoted, ", "));
}

// After the install: the build script if there is one (`build`: its command, "--if-present"
// when not known), then the prune of the development dependencies.
std::vector<std::string> build_steps(const std::string& build, const PackageManager& pm) {
    std::vector<std::string> steps;
    if (!build.empty())
        steps.push_back(pm.run + " build" + (build == "--if-present" ? " --if-present" : ""));
    if (!pm.prune.empty())
        steps.push_back(pm.prune);
    return steps;
}

// The Dockerfile's build step (the install is a layer of its own).
std::string build_step(const std::string& build, const PackageManager& pm) {
    auto steps = build_steps(build, pm);
    if (steps.empty())
        return "echo 'no build script'";
    return fmt::format("{}", fmt::join(steps, " && "));
}

// An argv as the Dockerfile's CMD: ["node", "app.js"].
std::string json_argv(const std::vector<std::string>& argv) {
    std::vector<std::string> quoted;
    for (const auto& word : argv)
        quoted.push_back(json(word).dump());
    return fmt::format("[{}]", fmt::join(quoted, ", "));
}

// What starts the server: `node FILE` when the start script is just that (signals reach node
// directly), else the package manager's start, else main.
std::vector<std::string> node_start(const fs::path& dir, const json& pkg, const PackageManager& pm,
                                    Detection& d) {
    auto start = script(pkg, "start");
    if (start.starts_with("node ") && start.find_first_of("&|;$<>'\"", 5) == std::string::npos &&
        start.find(' ', 5) == std::string::npos)
        return {"node", start.substr(5)};
    if (!start.empty())
        return {pm.name, "start"};
    std::string main = pkg.value("main", "");
    for (const char* file : {"server.js", "index.js", "app.js"})
        if (main.empty() && exists(dir, file))
            main = file;
    if (!main.empty()) {
        d.evidence.push_back(fmt::format("package.json: no start script; the server is {}", main));
        return {"node", main};
    }
    d.notes.push_back("package.json has no \"start\" script: add one that starts the server");
    return {"npm", "start"};
}

// The build and run commands run on the agent (templates/*/process.toml, and node-static's
// build): the install, the build steps (no prune for a static build: the next build needs the
// development dependencies, and the site no node_modules), and the server started as the
// container's CMD would be.
void process_vars(std::string_view template_name, const PackageManager& pm,
                  const std::string& build, const std::vector<std::string>& start, Vars& vars) {
    std::vector<std::string> steps{pm.agent_install};
    if (template_name == "node-static")
        steps.push_back(pm.run + " build");
    else {
        if (template_name == "node-next" && build.empty())
            steps.push_back("node_modules/.bin/next build"); // no build script
        for (auto& step : build_steps(build, pm))
            steps.push_back(std::move(step));
        vars["process_run"] = toml_string(
            template_name == "node-next"
                ? R"(exec node_modules/.bin/next start --hostname "$HOST" --port "$PORT")"
                : fmt::format("NODE_ENV=production exec {}", fmt::join(start, " ")));
    }
    vars["process_build"] = toml_string(fmt::format("{}", fmt::join(steps, " && ")));
    vars["process_cache"] = process_cache(template_name, pm);
    vars["package_manager"] = pm.name;
}

void common_vars(const fs::path& dir, const json& pkg, Detection& d) {
    auto pm = package_manager(dir);
    d.vars["package_files"] = pm.lockfile.empty() ? "package.json" : "package.json " + pm.lockfile;
    d.vars["install_command"] = pm.image_install();
    const auto build = script(pkg, "build");
    d.vars["build_step"] = build_step(build, pm);
    std::vector<std::string> start;
    if (d.template_name == "node-server") {
        start = node_start(dir, pkg, pm, d);
        d.vars["node_cmd"] = json_argv(start);
    }
    process_vars(d.template_name, pm, build, start, d.vars);
    if (!pm.lockfile.empty())
        d.evidence.push_back(
            fmt::format("{}: present (its package manager installs)", pm.lockfile));
    if (auto engines = pkg.find("engines"); engines != pkg.end() && engines->is_object())
        if (auto node = engines->find("node"); node != engines->end() && node->is_string()) {
            std::string v = node->get<std::string>();
            auto digit = v.find_first_of("0123456789");
            if (digit != std::string::npos) {
                auto major = v.substr(digit, v.find_first_not_of("0123456789", digit) - digit);
                d.vars["node_version"] = major;
                d.vars["node_min"] = major;
                d.evidence.push_back(
                    fmt::format("package.json: engines.node \"{}\" (node:{} image)", v, major));
            }
        }
}

std::string found_in(const json& pkg, std::string_view package) {
    return fmt::format("package.json: \"{}\" in {}", package, declared_in(pkg, package));
}

bool choose(const json& pkg, Detection& d) {
    const StaticBuilder* builder = nullptr;
    for (const auto& b : k_static_builders)
        if (!builder && !declared_in(pkg, b.package).empty())
            builder = &b;
    if (!declared_in(pkg, "next").empty()) {
        d.template_name = "node-next";
        d.stack = "Next.js";
        d.evidence.push_back(found_in(pkg, "next"));
        return true;
    }
    for (const auto& [package, name] : k_servers) {
        if (declared_in(pkg, package).empty())
            continue;
        d.template_name = "node-server";
        d.stack = fmt::format("Node.js ({})", name);
        d.evidence.push_back(found_in(pkg, package));
        if (builder)
            d.evidence.push_back(fmt::format(
                "{} too: a server that also builds its front-end; the server wins (the "
                "Dockerfile runs the build script; --template node-static for the front-end "
                "alone)",
                found_in(pkg, builder->package)));
        return true;
    }
    if (builder && !script(pkg, "build").empty()) {
        d.template_name = "node-static";
        d.stack = fmt::format("Node.js static build ({})", builder->name);
        d.evidence.push_back(found_in(pkg, builder->package));
        d.evidence.push_back(fmt::format("package.json: scripts.build \"{}\" writes {}/",
                                         script(pkg, "build"), builder->dir));
        d.vars["static_dir"] = builder->dir;
        d.vars["spa"] = builder->spa ? "true" : "false";
        d.notes.push_back("the build runs on the agent: it needs Node.js and the package manager "
                          "(npm, yarn or pnpm) on its PATH");
        return true;
    }
    if (!script(pkg, "start").empty() || pkg.contains("main")) {
        d.template_name = "node-server";
        d.stack = "Node.js server";
        d.evidence.push_back(
            !script(pkg, "start").empty()
                ? fmt::format("package.json: scripts.start \"{}\"", script(pkg, "start"))
                : "package.json: \"main\" is set");
        return true;
    }
    return false;
}

} // namespace

Vars node_defaults(std::string_view template_name) {
    Vars vars;
    if (template_name != "node-server" && template_name != "node-next" &&
        template_name != "node-static")
        return vars;
    process_vars(template_name, k_default_pm,
                 template_name == "node-next" ? "next build" : "--if-present", {"npm", "start"},
                 vars);
    return vars;
}

Found node(const fs::path& dir) {
    auto read = read_json_object(dir, "package.json");
    if (!read)
        return read.error();
    if (!*read)
        return std::optional<Detection>();
    const json& pkg = **read;
    Detection d;
    if (!choose(pkg, d))
        return std::optional<Detection>(); // e.g. tooling only: maybe a static site
    common_vars(dir, pkg, d);
    d.vars["stack"] = d.stack;
    if (auto name = pkg.find("name"); name != pkg.end() && name->is_string()) {
        std::string n = name->get<std::string>();
        d.app = n.substr(n.find('/') == std::string::npos ? 0 : n.find('/') + 1);
        d.app_from = "package.json";
    }
    if (d.template_name == "node-server")
        d.notes.push_back("the server must listen on process.env.HOST and process.env.PORT");
    return std::optional<Detection>(std::move(d));
}

} // namespace cli::init::stacks
