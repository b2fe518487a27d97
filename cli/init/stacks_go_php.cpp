// Go (go.mod and the main package) and PHP (composer.json).

#include <cli/init/stacks.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <regex>

namespace cli::init::stacks {

namespace {

bool has_main_package(const fs::path& folder) {
    static const std::regex main_package(R"((^|\n)package main\b)");
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
        if (entry.path().extension() != ".go" || entry.path().stem().string().ends_with("_test"))
            continue;
        auto text = read_if_present(folder, entry.path().filename().string());
        if (text && *text && std::regex_search(**text, main_package))
            return true;
    }
    return false;
}

// "." when the root is package main, else the first ./cmd/NAME that is.
std::string go_main(const fs::path& dir, Detection& d) {
    if (has_main_package(dir)) {
        d.evidence.push_back("*.go: package main at the root (go build .)");
        return ".";
    }
    std::error_code ec;
    std::vector<std::string> commands;
    for (const auto& entry : fs::directory_iterator(dir / "cmd", ec))
        if (entry.is_directory() && has_main_package(entry.path()))
            commands.push_back(entry.path().filename().string());
    std::sort(commands.begin(), commands.end());
    if (commands.empty()) {
        d.notes.push_back("no package main found: set the package in the Dockerfile's go build");
        return ".";
    }
    d.evidence.push_back(
        fmt::format("cmd/{}: package main (go build ./cmd/{})", commands[0], commands[0]));
    if (commands.size() > 1)
        d.notes.push_back(fmt::format("several commands under cmd/ ({}): the Dockerfile builds "
                                      "./cmd/{}",
                                      fmt::join(commands, ", "), commands[0]));
    return "./cmd/" + commands[0];
}

// The process engine's commands for the package main `package`, and for PHP served from
// `docroot` ("public" or "."), with the compilers' and package managers' caches in $CACHE_DIR
// (docs/build-cache.md); no [build] cache paths (templates/_shared/build-cache.toml).
void go_commands(const std::string& package, Vars& vars) {
    vars["go_package"] = package;
    vars["process_build"] = toml_string(
        fmt::format(R"(GOCACHE="$CACHE_DIR/go-build" GOMODCACHE="$CACHE_DIR/gomod" go build )"
                    "-modcacherw -o app {}",
                    package));
    vars["process_run"] = toml_string("exec ./app");
    vars["process_cache"] =
        R"(# No cache paths: Go keeps its build and module caches in $CACHE_DIR (GOCACHE, GOMODCACHE;
# -modcacherw leaves the module cache writable, so that the agent can replace and trim it).
)";
}

void php_commands(const std::string& docroot, Vars& vars) {
    vars["process_build"] =
        toml_string(R"(COMPOSER_CACHE_DIR="$CACHE_DIR/composer" composer install --no-dev )"
                    "--no-interaction --prefer-dist --optimize-autoloader");
    vars["process_run"] = toml_string(
        fmt::format(R"(PHP_CLI_SERVER_WORKERS=4 exec php -S "$HOST:$PORT" -t {})", docroot));
    vars["process_cache"] =
        R"(# No cache paths: Composer installs vendor/ from its cache in $CACHE_DIR/composer.
)";
}

} // namespace

Vars go_php_defaults(std::string_view template_name) {
    Vars vars;
    if (template_name == "go")
        go_commands(".", vars);
    else if (template_name == "php")
        php_commands(".", vars);
    return vars;
}

Found go(const fs::path& dir) {
    auto text = read_if_present(dir, "go.mod");
    if (!text)
        return text.error();
    if (!*text)
        return std::optional<Detection>();
    Detection d;
    d.template_name = "go";
    d.stack = "Go";
    std::smatch m;
    static const std::regex module(R"((^|\n)module\s+(\S+))");
    static const std::regex version(R"((^|\n)go\s+(\d+)\.(\d+))");
    std::string what = "present";
    if (std::regex_search(**text, m, module)) {
        what = "module " + m[2].str();
        auto path = m[2].str();
        d.app = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
        d.app_from = "go.mod's module path";
    }
    if (std::regex_search(**text, m, version)) {
        d.vars["go_version"] = m[2].str() + "." + m[3].str();
        what +=
            fmt::format(", go {} (golang:{} image)", d.vars["go_version"], d.vars["go_version"]);
    }
    d.evidence.push_back("go.mod: " + what);
    go_commands(go_main(dir, d), d.vars);
    d.vars["stack"] = d.stack;
    d.notes.push_back("the program must listen on os.Getenv(\"HOST\") + \":\" + "
                      "os.Getenv(\"PORT\")");
    return std::optional<Detection>(std::move(d));
}

Found php(const fs::path& dir) {
    auto read = read_json_object(dir, "composer.json");
    if (!read)
        return read.error();
    if (!*read)
        return std::optional<Detection>();
    const auto& composer = **read;
    Detection d;
    d.template_name = "php";
    d.stack = "PHP";
    d.evidence.push_back("composer.json: present");
    auto require = composer.value("require", nlohmann::json::object());
    for (const auto& [package, name] :
         {std::pair{"laravel/framework", "Laravel"},
          std::pair{"symfony/framework-bundle", "Symfony"}, std::pair{"slim/slim", "Slim"}})
        if (require.is_object() && require.contains(package)) {
            d.stack = fmt::format("PHP ({})", name);
            d.evidence.push_back(fmt::format("composer.json: \"{}\" in require", package));
            break;
        }
    if (exists(dir, "public/index.php")) {
        d.vars["php_docroot"] = "/public";
        d.vars["php_docroot_note"] = "public/";
        d.evidence.push_back("public/index.php: present (Apache serves public/)");
    }
    php_commands(exists(dir, "public/index.php") ? "public" : ".", d.vars);
    if (auto name = composer.find("name"); name != composer.end() && name->is_string()) {
        auto n = name->get<std::string>();
        d.app = n.substr(n.find('/') == std::string::npos ? 0 : n.find('/') + 1);
        d.app_from = "composer.json";
    }
    d.vars["stack"] = d.stack;
    return std::optional<Detection>(std::move(d));
}

} // namespace cli::init::stacks
