// deployctl init [DIR]: detect the app's stack, write a commented deploy.toml
// (and a Dockerfile when the stack needs one) from the embedded templates.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/init/detect.hpp>
#include <cli/init/templates.hpp>
#include <common/config.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <memory>

namespace cli::commands {

namespace {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

// deployctl init [DIR]: detect the stack, write deploy.toml (and a Dockerfile).
struct InitOptions {
    std::string dir = ".";
    std::string template_name; // --template: overrides detection
    bool force = false;        // replace existing files
    bool list = false;         // --list: only show the templates
};

std::vector<std::string> template_names() {
    std::vector<std::string> names;
    for (const auto& t : init::list_templates())
        names.push_back(t.name);
    return names;
}

std::string template_list() {
    std::string text;
    for (const auto& t : init::list_templates())
        text += fmt::format("\n  {:<15} {}", t.name, t.description);
    return text;
}

common::Result<init::TemplateInfo> chosen_template(const std::string& name) {
    if (auto found = init::find_template(name))
        return *found;
    auto close = common::closest_match(name, template_names());
    return make_error(ErrorKind::usage,
                      fmt::format("unknown template '{}'{}; the templates are:{}", name,
                                  close ? fmt::format(" (did you mean '{}'?)", *close) : "",
                                  template_list()));
}

// The detection, or what --template chose (with the detection's values when it
// detected the same template).
common::Result<init::Detection> choose(const fs::path& dir, const InitOptions& options) {
    auto detected = init::detect(dir);
    if (options.template_name.empty()) {
        if (!detected)
            return detected.error();
        if (!*detected)
            return make_error(ErrorKind::usage,
                              fmt::format("no app found in {}: none of Dockerfile, package.json, "
                                          "requirements.txt, pyproject.toml, go.mod, "
                                          "composer.json or index.html. Choose a template with "
                                          "--template NAME:{}",
                                          options.dir, template_list()));
        return std::move(**detected);
    }
    auto info = chosen_template(options.template_name);
    if (!info)
        return info.error();
    if (detected && *detected && (*detected)->template_name == info->name)
        return std::move(**detected);
    init::Detection d;
    d.template_name = info->name;
    d.stack = init::default_vars(info->name)["stack"];
    d.evidence.push_back(fmt::format("--template {}", info->name));
    if (detected && *detected)
        d.evidence.push_back(fmt::format("(detection said {}: {})", (*detected)->template_name,
                                         (*detected)->evidence.front()));
    return d;
}

// -a NAME, else a name from the app's files, else the folder's name.
common::Status pick_app(const Context& ctx, const fs::path& dir, const init::Detection& d,
                        output::InitSummary& s) {
    if (!ctx.global.app.empty()) {
        if (!common::is_valid_app_name(ctx.global.app))
            return make_error(ErrorKind::usage,
                              fmt::format("-a {}: an app name is 1-63 lower-case letters, "
                                          "digits or '-', starting with a letter",
                                          ctx.global.app));
        s.app = ctx.global.app;
        s.app_source = "-a";
        return {};
    }
    if (auto name = init::app_name_from(d.app); !name.empty()) {
        s.app = name;
        s.app_source = fmt::format("the name \"{}\" in {}", d.app, d.app_from);
        return {};
    }
    std::error_code ec;
    auto folder = fs::weakly_canonical(fs::absolute(dir), ec).filename().string();
    s.app = init::app_name_from(folder);
    s.app_source = fmt::format("the folder name \"{}\"", folder);
    if (s.app.empty()) {
        s.app = "app";
        s.app_source = "a default (the folder's name has no letters)";
    }
    return {};
}

bool inside_git_repo(const fs::path& dir) {
    std::error_code ec;
    for (auto p = fs::weakly_canonical(fs::absolute(dir), ec); !p.empty(); p = p.parent_path()) {
        if (fs::exists(p / ".git", ec))
            return true;
        if (p == p.parent_path())
            break;
    }
    return false;
}

void next_steps(const fs::path& dir, const InitOptions& options, output::InitSummary& s) {
    std::string cd = options.dir == "." ? "" : fmt::format("cd {} && ", options.dir);
    std::vector<std::string> paths;
    for (const auto& f : s.files)
        paths.push_back(f.path);
    if (!inside_git_repo(dir))
        s.next.push_back(cd + "git init && git add -A && git commit -m 'First commit'");
    else
        s.next.push_back(fmt::format("{}git add {} && git commit -m 'Add {}'", cd,
                                     fmt::join(paths, " "), fmt::join(paths, " and ")));
    s.next.push_back(fmt::format("deployctl deploy{} --host ssh://USER@SERVER   (or set "
                                 "[targets.production] hosts in deploy.toml)",
                                 options.dir == "." ? "" : " " + options.dir));
    s.notes.push_back("deployctl deploy packages the committed git tree: commit the new files "
                      "(and your app) first");
}

// What the agent needs to run what init wrote: a container engine for a Dockerfile, else
// what the template says (a runtime on the agent's PATH, or nothing).
void say_engine(const common::AppConfig& config, const init::TemplateInfo& info,
                output::InitSummary& s) {
    if (!config.build.dockerfile.empty()) {
        s.engine = "container";
        s.needs = fmt::format("this app builds with its {}: the agent needs a container engine "
                              "(deploy-agent serve --engine auto|docker|podman)",
                              config.build.dockerfile);
        return;
    }
    s.engine = "any";
    s.needs = !info.needs.empty()
                  ? info.needs
                  : "the agent runs it as a plain process (any engine): the tools its build and "
                    "run commands call must be on the agent's PATH";
}

common::Status write_files(const fs::path& dir, const std::vector<init::RenderedFile>& files,
                           const InitOptions& options, output::InitSummary& s) {
    std::vector<std::string> existing;
    std::error_code ec;
    for (const auto& f : files)
        if (fs::exists(dir / f.name, ec))
            existing.push_back(f.name);
    if (!existing.empty() && !options.force)
        return make_error(ErrorKind::usage,
                          fmt::format("{} already exist{} in {}: nothing was written (--force "
                                      "replaces {})",
                                      fmt::join(existing, " and "), existing.size() == 1 ? "s" : "",
                                      options.dir, existing.size() == 1 ? "it" : "them"));
    for (const auto& f : files) {
        bool replaced = std::find(existing.begin(), existing.end(), f.name) != existing.end();
        if (auto ok = common::atomic_write_file(dir / f.name, f.content); !ok)
            return ok;
        s.files.push_back({f.name, replaced});
    }
    return {};
}

common::Status init(Context& ctx, const InitOptions& options) {
    if (options.list) {
        std::vector<output::TemplateSummary> list;
        for (const auto& t : init::list_templates())
            list.push_back({t.name, t.description,
                            t.has_dockerfile ? std::vector<std::string>{"deploy.toml", "Dockerfile"}
                                             : std::vector<std::string>{"deploy.toml"}});
        ctx.out->emit(output::Templates{list});
        return {};
    }
    const fs::path dir = options.dir;
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        return make_error(ErrorKind::usage, fmt::format("{}: no such directory", options.dir));
    auto detection = choose(dir, options);
    if (!detection)
        return detection.error();
    auto info = init::find_template(detection->template_name);
    output::InitSummary s;
    s.dir = options.dir;
    s.template_name = detection->template_name;
    s.stack = detection->stack;
    s.detected = !detection->evidence.front().starts_with("--template ");
    s.evidence = detection->evidence;
    s.notes = detection->notes;
    if (auto ok = pick_app(ctx, dir, *detection, s); !ok)
        return ok;
    auto vars = init::default_vars(s.template_name);
    for (auto& [key, value] : detection->vars)
        vars[key] = value;
    vars["app"] = s.app;
    auto files = init::render_template(*info, vars);
    if (!files)
        return files.error();
    // A template that does not parse is a bug: refuse it rather than write it.
    auto parsed = common::parse_config(files->front().content, "deploy.toml");
    if (!parsed)
        return make_error(ErrorKind::internal,
                          fmt::format("template {} makes an invalid deploy.toml (a bug): {}",
                                      s.template_name, parsed.error().message));
    say_engine(*parsed, *info, s);
    if (s.template_name == "dockerfile" && !fs::exists(dir / "Dockerfile", ec))
        s.notes.push_back("there is no Dockerfile yet: write one before deploying");
    if (auto ok = write_files(dir, *files, options, s); !ok)
        return ok;
    next_steps(dir, options, s);
    ctx.out->emit(s);
    return {};
}

} // namespace

void add_init(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<InitOptions>();
    auto* cmd = app.add_subcommand(
        "init", "Write a commented deploy.toml (and a Dockerfile when the stack needs one) for "
                "the app in DIR, from the stack it detects");
    cmd->add_option("DIR", options->dir, "The app's folder (default: .)");
    cmd->add_option("--template", options->template_name,
                    "Use this template instead of detecting one (see --list)")
        ->type_name("NAME");
    cmd->add_flag("--force", options->force, "Replace an existing deploy.toml or Dockerfile");
    cmd->add_flag("--list", options->list, "List the templates, one line each, and exit");
    cmd->footer("Examples:\n  deployctl init\n  deployctl init apps/web --template node-server\n"
                "  deployctl init --list\n  deployctl init --json | jq .evidence\n\n"
                "Detects, in this order: a Dockerfile; package.json (Next.js, a server such as "
                "Express\nor Fastify, a static build such as Vite); requirements.txt or "
                "pyproject.toml (Django,\nFastAPI, Flask); go.mod; composer.json; index.html. "
                "Nothing found, an unknown\ntemplate, or a file that exists without --force: "
                "exit 2, nothing written.\n");
    cmd->callback(
        [&ctx, options] { ctx.command = [&ctx, options] { return init(ctx, *options); }; });
}

} // namespace cli::commands
