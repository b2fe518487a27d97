// deployctl init: the order in which stacks are tried, Dockerfile and static sites,
// default placeholder values and app names.

#include <cli/init/detect.hpp>
#include <cli/init/stacks.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <regex>
#include <sstream>

namespace cli::init {

namespace stacks {

common::Result<std::optional<std::string>> read_if_present(const fs::path& dir,
                                                           std::string_view name) {
    std::error_code ec;
    if (!fs::is_regular_file(dir / name, ec))
        return std::optional<std::string>();
    auto text = common::read_file(dir / name);
    if (!text)
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("{}: {}", name, text.error().message));
    return std::optional<std::string>(std::move(*text));
}

common::Result<std::optional<nlohmann::json>> read_json_object(const fs::path& dir,
                                                               std::string_view name) {
    auto text = read_if_present(dir, name);
    if (!text)
        return text.error();
    if (!*text)
        return std::optional<nlohmann::json>();
    auto object = nlohmann::json::parse(**text, nullptr, false);
    if (object.is_discarded() || !object.is_object())
        return common::make_error(common::ErrorKind::config,
                                  fmt::format("{}: not a valid JSON object; fix it, or choose a "
                                              "template with --template NAME",
                                              name));
    return std::optional<nlohmann::json>(std::move(object));
}

bool exists(const fs::path& dir, std::string_view name) {
    std::error_code ec;
    return fs::exists(dir / name, ec);
}

} // namespace stacks

namespace {

using stacks::Found;
namespace fs = std::filesystem;

// In the first line of every Dockerfile of templates/.
constexpr std::string_view k_written_by_init = "written by `deployctl init`";

// The FROM images and the EXPOSEd port of a Dockerfile, for the evidence.
void read_dockerfile(const std::string& text, Detection& d) {
    std::istringstream in(text);
    std::string line;
    static const std::regex from(R"(^\s*FROM\s+(\S+))", std::regex::icase);
    static const std::regex expose(R"(^\s*EXPOSE\s+(\d+))", std::regex::icase);
    std::vector<std::string> images;
    std::smatch m;
    while (std::getline(in, line)) {
        if (std::regex_search(line, m, from))
            images.push_back(m[1]);
        else if (std::regex_search(line, m, expose))
            d.vars["port"] = m[1];
    }
    std::string what = images.empty() ? "present" : "FROM " + images.back();
    d.evidence.push_back(fmt::format("Dockerfile: {}; it builds and starts the app, so "
                                     "deploy.toml uses it",
                                     what));
    if (auto port = d.vars.find("port"); port != d.vars.end())
        d.evidence.push_back(fmt::format("Dockerfile: EXPOSE {} (run.port)", port->second));
}

Found dockerfile(const fs::path& dir) {
    auto text = stacks::read_if_present(dir, "Dockerfile");
    if (!text)
        return text.error();
    // One that init wrote says nothing about the app: look past it, so that
    // `init --force` again gives the same template as the first time.
    if (!*text || (*text)->find(k_written_by_init) != std::string::npos)
        return std::optional<Detection>();
    Detection d;
    d.template_name = "dockerfile";
    d.stack = "Dockerfile";
    read_dockerfile(**text, d);
    d.notes.push_back("the Dockerfile's app must listen on 127.0.0.1:$PORT (the agent sets "
                      "PORT), and the agent needs a container engine (--engine docker or "
                      "podman)");
    return std::optional<Detection>(std::move(d));
}

Found static_site(const fs::path& dir) {
    for (const char* folder : {".", "public"}) {
        auto index =
            std::string(folder) == "." ? "index.html" : std::string(folder) + "/index.html";
        if (!stacks::exists(dir, index))
            continue;
        Detection d;
        d.template_name = "static";
        d.stack = "static site";
        d.evidence.push_back(fmt::format("{}: present, and no app server files (package.json, "
                                         "requirements.txt, go.mod, Cargo.toml, ...)",
                                         index));
        d.vars["static_dir"] = folder;
        return std::optional<Detection>(std::move(d));
    }
    return std::optional<Detection>();
}

// The stack behind a Dockerfile, said in the evidence: the Dockerfile wins.
void note_shadowed(const fs::path& dir, Detection& d) {
    for (auto* detector :
         {stacks::node, stacks::python, stacks::go, stacks::php, stacks::rust, stacks::c_make}) {
        auto other = detector(dir);
        if (other && *other) {
            d.evidence.push_back(fmt::format(
                "{} also looks like {}: the Dockerfile wins (it "
                "already says how to build and start the app; "
                "--template {} ignores it)",
                (*other)->evidence.front().substr(0, (*other)->evidence.front().find(':')),
                (*other)->stack, (*other)->template_name));
            return;
        }
    }
}

} // namespace

common::Result<std::optional<Detection>> detect(const fs::path& dir, Engine engine) {
    Found found = std::optional<Detection>();
    if (engine == Engine::container)
        found = dockerfile(dir);
    if (!found)
        return found;
    if (*found) {
        note_shadowed(dir, **found);
        return found;
    }
    for (auto* detector : {stacks::node, stacks::python, stacks::go, stacks::php, stacks::rust,
                           stacks::c_make, static_site}) {
        found = detector(dir);
        if (!found || *found)
            return found;
    }
    return std::optional<Detection>();
}

Vars default_vars(std::string_view template_name) {
    Vars v{
        {"template", std::string(template_name)},
        {"port", "8080"},
        {"health_path", "/"},
        {"dockerfile", "Dockerfile"},
        {"stack", std::string(template_name)},
        // Node.js
        {"node_version", "22"},
        {"node_min", "18"}, // Debian 12's
        {"package_files", "package.json"},
        {"install_command", "npm install"},
        {"build_step", "npm run build --if-present && npm prune --omit=dev"},
        {"node_cmd", R"(["npm", "start"])"},
        {"build_command", "npm install && npm run build"},
        {"static_dir", "dist"},
        {"spa", "true"},
        // Python
        {"python_version", "3.12"},
        {"python_extra", ""},
        // Go
        {"go_version", "1.23"},
        {"go_package", "."},
        // PHP
        {"php_version", "8.3"},
        {"php_docroot", ""},
        {"php_docroot_note", "the project's root"},
        // Rust, C and C++ (the program's name and the commands: stacks_rust_c.cpp)
        {"rust_needs", "Rust's cargo"},
        {"cargo_locked", ""},
        {"program_note", ""},
    };
    auto set = [&v](std::initializer_list<std::pair<const char*, std::string>> values) {
        for (const auto& [key, value] : values)
            v[key] = value;
    };
    if (template_name == "static")
        set({{"static_dir", "."}, {"stack", "static site"}});
    else if (template_name == "node-next")
        set({{"port", "3000"}, {"stack", "Next.js"}});
    else if (template_name == "node-server")
        set({{"port", "3000"}, {"stack", "Node.js server"}});
    else if (template_name == "node-static")
        set({{"stack", "Node.js static build"}});
    else if (template_name == "go")
        set({{"stack", "Go"}});
    else if (template_name == "php")
        set({{"stack", "PHP"}});
    else if (template_name == "rust")
        set({{"stack", "Rust"}});
    else if (template_name == "c-make")
        set({{"stack", "C/C++ (make)"}});
    for (auto* defaults : {stacks::node_defaults, stacks::python_defaults, stacks::go_php_defaults,
                           stacks::rust_c_defaults})
        for (auto& [key, value] : defaults(template_name))
            v[key] = value;
    return v;
}

std::string app_name_from(std::string_view raw) {
    std::string name;
    for (char c : raw) {
        char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        bool keep = (lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9');
        if (keep)
            name += lower;
        else if (!name.empty() && name.back() != '-')
            name += '-';
    }
    auto first_letter = name.find_first_of("abcdefghijklmnopqrstuvwxyz");
    name = first_letter == std::string::npos ? "" : name.substr(first_letter);
    if (name.size() > 63)
        name.resize(63);
    while (!name.empty() && name.back() == '-')
        name.pop_back();
    return name;
}

} // namespace cli::init
