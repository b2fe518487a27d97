// deployctl init [DIR]: detect the app's stack, write a commented deploy.toml
// (and a Dockerfile when the stack needs one) from the embedded templates, for the
// engine the agents run (--engine, or asked of the agents init knows).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/init/detect.hpp>
#include <cli/init/templates.hpp>
#include <cli/target.hpp>
#include <common/config.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <memory>

namespace cli::commands {

namespace {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

// deployctl init [DIR]: detect the stack, write deploy.toml (and a Dockerfile).
struct InitOptions {
    std::string dir = ".";
    std::string template_name;   // --template: overrides detection
    std::string engine = "auto"; // --engine: auto|docker|podman|process
    bool force = false;          // replace existing files
    bool list = false;           // --list: only show the templates
};

// Which engine the files are written for, and why ("" when nothing was asked or said).
struct EngineChoice {
    init::Engine engine = init::Engine::container;
    std::string reason;
    std::vector<std::string> notes;
};

constexpr std::string_view k_pick_process = "deployctl init --engine process writes build and run "
                                            "commands instead, for an agent without a container "
                                            "engine";

// --engine auto: ask the agents init knows of (--host, DEPLOYCTL_HOST, the targets of a
// deploy.toml already in DIR) which engine they run (GET /v1/info). Any one without a
// container engine makes it process: those files run on every engine. None known: a
// container engine, as when nothing is asked; none answering: the same, with a note.
EngineChoice ask_agents(Context& ctx, const fs::path& dir) {
    EngineChoice choice;
    const char* env_hosts = std::getenv("DEPLOYCTL_HOST");
    std::error_code ec;
    // A deploy.toml that --force replaces (choose_engine: without it nothing is asked): its
    // targets, when it has any and parses.
    auto has_targets = [&dir, &ec] {
        if (!fs::exists(dir / "deploy.toml", ec))
            return false;
        auto config = common::load_config(dir / "deploy.toml");
        return config && !config->targets.empty();
    };
    if (ctx.global.hosts.empty() && (!env_hosts || !*env_hosts) && !has_targets())
        return choice;
    auto cannot_ask = [&choice](const std::string& why) {
        choice.notes.push_back(
            choice.engine == init::Engine::container
                ? fmt::format("could not ask the agents which engine they run ({}): written for "
                              "a container engine; {}",
                              why, k_pick_process)
                : fmt::format("could not ask the other agents which engine they run ({})", why));
        return choice;
    };
    auto target = resolve_target(ctx, dir, ConfigNeed::hosts_only);
    if (!target)
        return cannot_ask(target.error().message);
    auto urls = host_urls(*target);
    if (!urls)
        return cannot_ask(urls.error().message);
    std::vector<std::string> process, container, unreachable;
    for (const auto& url : *urls) {
        auto client = ctx.connect(url, target->ssh, target->tls);
        auto info = client ? (*client)->get_json("/v1/info")
                           : common::Result<nlohmann::json>(client.error());
        if (!info)
            unreachable.push_back(info.error().message);
        else if (auto engine = info->value("engine", ""); engine == "process")
            process.push_back(url.base_url);
        else
            container.push_back(fmt::format("{} ({})", url.base_url, engine));
    }
    if (!process.empty()) {
        choice.engine = init::Engine::process;
        choice.reason = fmt::format("{} {} no container engine (--engine process)",
                                    fmt::join(process, ", "), process.size() == 1 ? "has" : "have");
    } else if (!container.empty()) {
        choice.reason = fmt::format("{} {} a container engine", fmt::join(container, ", "),
                                    container.size() == 1 ? "runs" : "run");
    }
    if (!unreachable.empty())
        cannot_ask(fmt::format("{}", fmt::join(unreachable, "; ")));
    return choice;
}

EngineChoice choose_engine(Context& ctx, const fs::path& dir, const InitOptions& options) {
    if (options.engine == "process")
        return {init::Engine::process, "--engine process", {}};
    if (options.engine != "auto")
        return {init::Engine::container, "--engine " + options.engine, {}};
    // A deploy.toml there without --force: write_files() refuses, so no agent is asked first
    // (a wait for each, and notes about the unreachable ones, before that error).
    std::error_code ec;
    if (!options.force && fs::exists(dir / "deploy.toml", ec))
        return {};
    return ask_agents(ctx, dir);
}

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
common::Result<init::Detection> choose(const fs::path& dir, const InitOptions& options,
                                       init::Engine engine) {
    auto detected = init::detect(dir, engine);
    if (options.template_name.empty()) {
        if (!detected)
            return detected.error();
        std::error_code ec;
        if (!*detected && engine == init::Engine::process && fs::exists(dir / "Dockerfile", ec))
            return make_error(ErrorKind::usage,
                              fmt::format("no app found in {} but a Dockerfile, which the process "
                                          "engine cannot build (an agent with --engine docker or "
                                          "podman can: deployctl init --engine docker). Choose a "
                                          "template with --template NAME:{}",
                                          options.dir, template_list()));
        if (!*detected)
            return make_error(ErrorKind::usage,
                              fmt::format("no app found in {}: none of Dockerfile, package.json, "
                                          "requirements.txt, pyproject.toml, go.mod, "
                                          "composer.json, Cargo.toml, a Makefile with C or C++ "
                                          "sources or index.html. Choose a template with "
                                          "--template NAME:{}",
                                          options.dir, template_list()));
        return std::move(**detected);
    }
    auto info = chosen_template(options.template_name);
    if (!info)
        return info.error();
    if (!info->supports(engine))
        return make_error(ErrorKind::usage,
                          fmt::format("template {} needs a container engine: it cannot be "
                                      "written for --engine process",
                                      info->name));
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
common::Status say_engine(const common::AppConfig& config, const init::TemplateInfo& info,
                          const init::Vars& vars, output::InitSummary& s) {
    if (!config.build.dockerfile.empty()) {
        s.engine = "container";
        s.needs = fmt::format("this app builds with its {}: the agent needs a container engine "
                              "(deploy-agent serve --engine auto|docker|podman)",
                              config.build.dockerfile);
        return {};
    }
    s.engine = "any";
    if (info.needs.empty()) {
        s.needs = "the agent runs it as a plain process (any engine): the tools its build and "
                  "run commands call must be on the agent's PATH";
        return {};
    }
    TRY_ASSIGN(s.needs, init::render(info.needs, vars));
    return {};
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
    auto engine = choose_engine(ctx, dir, options);
    auto detection = choose(dir, options, engine.engine);
    if (!detection)
        return detection.error();
    auto info = init::find_template(detection->template_name);
    output::InitSummary s;
    s.variant = engine.engine == init::Engine::process ? "process" : "container";
    s.variant_reason = engine.reason;
    s.dir = options.dir;
    s.template_name = detection->template_name;
    s.stack = detection->stack;
    s.detected = !detection->evidence.front().starts_with("--template ");
    s.evidence = detection->evidence;
    s.notes = detection->notes;
    s.notes.insert(s.notes.end(), engine.notes.begin(), engine.notes.end());
    if (auto ok = pick_app(ctx, dir, *detection, s); !ok)
        return ok;
    auto vars = init::default_vars(s.template_name);
    for (auto& [key, value] : detection->vars)
        vars[key] = value;
    vars["app"] = s.app;
    auto files = init::render_template(*info, vars, engine.engine);
    if (!files)
        return files.error();
    // A template that does not parse is a bug: refuse it rather than write it.
    auto parsed = common::parse_config(files->front().content, "deploy.toml");
    if (!parsed)
        return make_error(ErrorKind::internal,
                          fmt::format("template {} makes an invalid deploy.toml (a bug): {}",
                                      s.template_name, parsed.error().message));
    if (auto ok = say_engine(*parsed, *info, vars, s); !ok)
        return ok;
    if (s.template_name == "dockerfile" && !fs::exists(dir / "Dockerfile", ec))
        s.notes.push_back("there is no Dockerfile yet: write one before deploying");
    if (engine.engine == init::Engine::process && fs::exists(dir / "Dockerfile", ec))
        s.notes.push_back("the Dockerfile in the folder is not used by --engine process agents, "
                          "but agents with docker or podman build it instead of these commands: "
                          "remove it (git rm Dockerfile) to run the app as a process everywhere");
    else if (engine.engine == init::Engine::container && engine.reason.empty() &&
             engine.notes.empty() && info->has_process)
        s.notes.push_back(std::string(k_pick_process));
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
    cmd->add_option("--engine", options->engine,
                    "The agents' engine: process (build and run commands, no Dockerfile), docker "
                    "or podman (a Dockerfile), or auto: ask the agents of --host, DEPLOYCTL_HOST "
                    "or deploy.toml, else docker")
        ->check(CLI::IsMember({"auto", "docker", "podman", "process"}))
        ->type_name("ENGINE");
    cmd->add_flag("--force", options->force, "Replace an existing deploy.toml or Dockerfile");
    cmd->add_flag("--list", options->list, "List the templates, one line each, and exit");
    cmd->footer("Examples:\n  deployctl init\n  deployctl init apps/web --template node-server\n"
                "  deployctl init --engine process\n  deployctl init --host "
                "ssh://deploy@server   (asks the agent its engine)\n"
                "  deployctl init --list\n  deployctl init --json | jq .evidence\n\n"
                "Detects, in this order: a Dockerfile (not with --engine process); package.json\n"
                "(Next.js, a server such as Express or Fastify, a static build such as Vite);\n"
                "requirements.txt or pyproject.toml (Django, FastAPI, Flask, else a main.py,\n"
                "app.py or server.py); go.mod; composer.json; Cargo.toml; a Makefile with C or\n"
                "C++ sources (the program it builds read from it); index.html. Nothing found, an\n"
                "unknown template, or a file that exists without --force: exit 2, nothing "
                "written.\n");
    cmd->callback(
        [&ctx, options] { ctx.command = [&ctx, options] { return init(ctx, *options); }; });
}

} // namespace cli::commands
