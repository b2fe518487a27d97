#include <common/address.hpp>
#include <common/command_line.hpp>
#include <common/config.hpp>
#include <common/cron.hpp>
#include <common/duration.hpp>
#include <common/env_name.hpp>
#include <common/fingerprint.hpp>
#include <common/fs.hpp>
#include <common/manifest.hpp>
#include <common/toml_reader.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <sstream>

namespace common {

namespace {

Status read_health(const Reader& r, const toml::table& t, HealthConfig& out) {
    TRY(r.check_keys(t, "run.health", {"path", "interval", "timeout", "grace"}));
    if (const auto* n = t.get("path")) {
        TRY_ASSIGN(out.path, r.string_at(*n, "run.health.path"));
        if (out.path.empty() || out.path.front() != '/')
            return r.error_at(n->source(), "run.health.path must start with '/'");
    }
    if (const auto* n = t.get("interval")) {
        TRY_ASSIGN(out.interval, r.duration_at(*n, "run.health.interval"));
    }
    if (const auto* n = t.get("timeout")) {
        TRY_ASSIGN(out.timeout, r.duration_at(*n, "run.health.timeout"));
    }
    if (const auto* n = t.get("grace")) {
        TRY_ASSIGN(out.grace, r.duration_at(*n, "run.health.grace"));
        if (out.grace.count() <= 0)
            return r.error_at(n->source(), "run.health.grace must be longer than 0s");
    }
    return {};
}

Status read_build(const Reader& r, const toml::table& t, BuildConfig& out) {
    TRY(r.check_keys(
        t, "[build]",
        {"command", "dockerfile", "timeout", "memory", "args", "secrets", "cache", "cache_max"}));
    if (const auto* n = t.get("command")) {
        TRY_ASSIGN(out.command, r.string_at(*n, "build.command"));
    }
    if (const auto* n = t.get("dockerfile")) {
        TRY_ASSIGN(out.dockerfile, r.string_at(*n, "build.dockerfile"));
    }
    if (const auto* n = t.get("timeout")) {
        TRY_ASSIGN(out.timeout, r.duration_at(*n, "build.timeout"));
    }
    if (const auto* n = t.get("memory")) {
        TRY_ASSIGN(out.memory, r.size_at(*n, "build.memory"));
    }
    if (const auto* n = t.get("secrets")) {
        TRY_ASSIGN(out.secrets, r.strings_at(*n, "build.secrets"));
    }
    if (const auto* n = t.get("cache")) {
        TRY_ASSIGN(out.cache, r.strings_at(*n, "build.cache"));
        std::set<std::string> seen;
        for (auto& path : out.cache) {
            while (path.size() > 1 && path.back() == '/')
                path.pop_back();
            if (!is_safe_relative_path(path) || path == ".")
                return r.error_at(n->source(), "build.cache: \"" + path +
                                                   "\" is not a relative path inside the app "
                                                   "(e.g. \"node_modules\")");
            if (!seen.insert(path).second)
                return r.error_at(n->source(), "build.cache lists \"" + path + "\" twice");
        }
        for (const auto& path : out.cache)
            for (const auto& other : out.cache)
                if (other.size() > path.size() && other.rfind(path + "/", 0) == 0)
                    return r.error_at(n->source(), "build.cache lists \"" + other + "\" inside \"" +
                                                       path + "\": list one of them");
    }
    if (const auto* n = t.get("cache_max")) {
        TRY_ASSIGN(out.cache_max, r.size_at(*n, "build.cache_max"));
    }
    if (const auto* n = t.get("args")) {
        TRY_ASSIGN(const toml::table* args, r.table_at(*n, "build.args"));
        for (auto&& [k, v] : *args) {
            TRY_ASSIGN(out.args[std::string(k.str())], r.string_at(v, "every build.args value"));
        }
    }
    return {};
}

Status read_run(const Reader& r, const toml::table& t, RunConfig& out) {
    TRY(r.check_keys(t, "[run]", {"command", "port", "memory", "cpus", "pids", "health"}));
    if (const auto* n = t.get("command")) {
        TRY_ASSIGN(out.command, r.string_at(*n, "run.command"));
    }
    if (const auto* n = t.get("port")) {
        TRY_ASSIGN(std::int64_t port, r.integer_at(*n, "run.port", 1, 65535));
        out.port = static_cast<int>(port);
    }
    if (const auto* n = t.get("memory")) {
        TRY_ASSIGN(out.memory, r.size_at(*n, "run.memory"));
    }
    if (const auto* n = t.get("cpus")) {
        // An integer (2) or a fraction (0.5) of cores; at least a thousandth.
        std::optional<double> cpus;
        if (auto v = n->as_floating_point())
            cpus = v->get();
        else if (auto i = n->as_integer())
            cpus = static_cast<double>(i->get());
        if (!cpus || !(*cpus >= 0.001) || *cpus > 4096)
            return r.error_at(n->source(), "run.cpus must be a number of cores greater than 0 "
                                           "(e.g. 0.5 or 2), at most 4096");
        out.cpus = *cpus;
    }
    if (const auto* n = t.get("pids")) {
        TRY_ASSIGN(out.pids, r.integer_at(*n, "run.pids", 1, 4194304));
    }
    if (const auto* n = t.get("health")) {
        TRY_ASSIGN(const toml::table* health, r.table_at(*n, "run.health"));
        TRY(read_health(r, *health, out.health));
    }
    return {};
}

Status read_release(const Reader& r, const toml::table& t, ReleaseConfig& out) {
    TRY(r.check_keys(t, "[release]", {"command", "timeout"}));
    if (const auto* n = t.get("command")) {
        TRY_ASSIGN(out.command, r.string_at(*n, "release.command"));
        if (out.command.find_first_not_of(" \t\r\n") == std::string::npos)
            return r.error_at(n->source(), "release.command must not be empty (remove [release] "
                                           "to deploy without a release command)");
    }
    if (const auto* n = t.get("timeout")) {
        TRY_ASSIGN(out.timeout, r.duration_at(*n, "release.timeout"));
        if (out.timeout.count() <= 0)
            return r.error_at(n->source(), "release.timeout must be longer than 0s");
    }
    return {};
}

Status read_git(const Reader& r, const toml::table& t, GitConfig& out) {
    TRY(r.check_keys(t, "[git]", {"branch", "url", "token"}));
    if (const auto* n = t.get("url")) {
        TRY_ASSIGN(out.url, r.string_at(*n, "git.url"));
        const bool known = out.url.rfind("https://", 0) == 0 || out.url.rfind("http://", 0) == 0 ||
                           out.url.rfind("git://", 0) == 0 || out.url.rfind("file:///", 0) == 0 ||
                           is_ssh_git_url(out.url);
        if (!known)
            return r.error_at(n->source(),
                              fmt::format("git.url \"{}\" is not a repository URL the agent can "
                                          "fetch: https://, http://, git://, ssh://, "
                                          "USER@HOST:PATH or file:///PATH",
                                          out.url));
        if (out.url.find_first_of(" \t\r\n") != std::string::npos)
            return r.error_at(n->source(), "git.url must not contain spaces or line breaks");
        const auto slashes = out.url.find("//");
        const auto authority = slashes == std::string::npos ? out.url : out.url.substr(slashes + 2);
        const auto at = authority.find('@');
        if (at != std::string::npos && authority.substr(0, at).find(':') != std::string::npos &&
            at < authority.find('/'))
            return r.error_at(n->source(), "git.url holds a password: deploy.toml is in every "
                                           "release and its events; give a URL without one");
    }
    if (const auto* n = t.get("token")) {
        TRY_ASSIGN(out.token, r.string_at(*n, "git.token"));
        if (auto bad = common::check_env_name(out.token); !bad)
            return r.error_at(n->source(),
                              fmt::format("git.token names a secret of the app (deployctl env "
                                          "set --secret NAME): {}",
                                          bad.error().message));
        const bool tls = out.url.rfind("https://", 0) == 0;
        // The URL's host itself, not a prefix of it: http://localhost.example.com is not.
        const bool loopback =
            out.url.rfind("http://", 0) == 0 && common::is_loopback_host(common::url_host(out.url));
        if (is_ssh_git_url(out.url))
            return r.error_at(n->source(), "git.token is for https:// URLs: an ssh git.url is "
                                           "fetched with the app's deploy key (deployctl hooks "
                                           "key)");
        if (!tls && !loopback)
            return r.error_at(n->source(), "git.token is sent only over https:// (or plain http "
                                           "to this machine): give an https:// git.url");
    }
    if (const auto* n = t.get("branch")) {
        TRY_ASSIGN(out.branch, r.string_at(*n, "git.branch"));
        if (out.branch.rfind("refs/heads/", 0) == 0)
            return r.error_at(n->source(), fmt::format("git.branch is a branch's name: write "
                                                       "\"{}\", without refs/heads/",
                                                       out.branch.substr(11)));
        if (!is_valid_branch_name(out.branch))
            return r.error_at(n->source(),
                              fmt::format("git.branch \"{}\" is not a name git allows for a "
                                          "branch (git check-ref-format --branch)",
                                          out.branch));
    }
    return {};
}

Status read_env(const Reader& r, const toml::table& t, std::map<std::string, std::string>& out);

Status read_preview(const Reader& r, const toml::table& t, PreviewConfig& out) {
    TRY(r.check_keys(t, "[preview]", {"max", "forks", "secrets", "env"}));
    if (const auto* n = t.get("max")) {
        TRY_ASSIGN(std::int64_t max, r.integer_at(*n, "preview.max", 0, 1000));
        out.max = static_cast<int>(max);
    }
    if (const auto* n = t.get("forks")) {
        TRY_ASSIGN(out.forks, r.boolean_at(*n, "preview.forks"));
    }
    if (const auto* n = t.get("secrets")) {
        TRY_ASSIGN(out.secrets, r.strings_at(*n, "preview.secrets"));
        for (const auto& name : out.secrets)
            if (auto bad = common::check_env_name(name); !bad)
                return r.error_at(n->source(),
                                  fmt::format("preview.secrets names secrets of the app: {}",
                                              bad.error().message));
    }
    if (const auto* n = t.get("env")) {
        TRY_ASSIGN(const toml::table* env, r.table_at(*n, "preview.env"));
        TRY(read_env(r, *env, out.env));
    }
    return {};
}

Status read_cron_job(const Reader& r, const toml::table& t, CronJob& out) {
    TRY(r.check_keys(t, "[[cron]]", {"name", "schedule", "command", "timeout", "timezone"}));
    const auto* name = t.get("name");
    if (!name)
        return r.error_at(t.source(), "[[cron]] needs a name (name = \"cleanup\")");
    TRY_ASSIGN(out.name, r.string_at(*name, "cron.name"));
    if (!is_valid_app_name(out.name))
        return r.error_at(name->source(), "cron.name must be 1-63 lower-case letters, digits or "
                                          "'-', starting with a letter");
    const auto* schedule = t.get("schedule");
    if (!schedule)
        return r.error_at(t.source(), fmt::format("[[cron]] {} needs a schedule (schedule = "
                                                  "\"*/5 * * * *\" or \"@daily\")",
                                                  out.name));
    TRY_ASSIGN(out.schedule, r.string_at(*schedule, "cron.schedule"));
    if (auto parsed = parse_cron_schedule(out.schedule); !parsed)
        return r.error_at(schedule->source(), "cron.schedule: " + parsed.error().message);
    const auto* command = t.get("command");
    if (!command)
        return r.error_at(t.source(),
                          fmt::format("[[cron]] {} needs a command (a shell command)", out.name));
    TRY_ASSIGN(out.command, r.string_at(*command, "cron.command"));
    if (out.command.find_first_not_of(" \t\r\n") == std::string::npos)
        return r.error_at(command->source(), "cron.command must not be empty");
    if (const auto* n = t.get("timeout")) {
        TRY_ASSIGN(out.timeout, r.duration_at(*n, "cron.timeout"));
        if (out.timeout.count() <= 0)
            return r.error_at(n->source(), "cron.timeout must be longer than 0s");
    }
    if (const auto* n = t.get("timezone")) {
        TRY_ASSIGN(out.timezone, r.string_at(*n, "cron.timezone"));
        if (!is_valid_timezone(out.timezone))
            return r.error_at(n->source(),
                              fmt::format("cron.timezone: unknown timezone \"{}\" (an IANA name "
                                          "such as \"UTC\" or \"Europe/Paris\")",
                                          out.timezone));
    }
    return {};
}

Status read_cron(const Reader& r, const toml::node& node, std::vector<CronJob>& out) {
    const auto* array = node.as_array();
    if (!array || !array->is_array_of_tables())
        return r.error_at(node.source(), "cron must be an array of tables: write each job as "
                                         "[[cron]]");
    for (const auto& element : *array) {
        CronJob job;
        TRY(read_cron_job(r, *element.as_table(), job));
        for (const auto& other : out)
            if (other.name == job.name)
                return r.error_at(
                    element.as_table()->get("name")->source(),
                    fmt::format("cron.name \"{}\" is used by two [[cron]] jobs", job.name));
        out.push_back(std::move(job));
    }
    return {};
}

Status read_static(const Reader& r, const toml::table& t, StaticConfig& out) {
    TRY(r.check_keys(t, "[static]", {"dir", "spa"}));
    if (const auto* n = t.get("dir")) {
        TRY_ASSIGN(out.dir, r.string_at(*n, "static.dir"));
    }
    if (const auto* n = t.get("spa")) {
        TRY_ASSIGN(out.spa, r.boolean_at(*n, "static.spa"));
    }
    if (out.dir.empty())
        out.dir = ".";
    else if (!is_safe_relative_path(out.dir) && out.dir != ".")
        return r.error_at(t.get("dir")->source(),
                          "static.dir must be a relative path inside the app");
    return {};
}

Status read_proxy(const Reader& r, const toml::table& t, AppProxySettings& out) {
    TRY(r.check_keys(t, "[proxy]",
                     {"max_body", "connect_timeout", "read_timeout", "websocket_idle"}));
    if (const auto* n = t.get("max_body")) {
        TRY_ASSIGN(out.max_body, r.size_at(*n, "proxy.max_body"));
    }
    for (auto [key, field] : {std::pair{"connect_timeout", &out.connect_timeout},
                              std::pair{"read_timeout", &out.read_timeout},
                              std::pair{"websocket_idle", &out.websocket_idle}}) {
        if (const auto* n = t.get(key)) {
            TRY_ASSIGN(*field, r.duration_at(*n, fmt::format("proxy.{}", key)));
            if (field->count() <= 0)
                return r.error_at(n->source(), fmt::format("proxy.{} must be above 0", key));
        }
    }
    return {};
}

Status read_logs(const Reader& r, const toml::table& t, LogSettings& out) {
    TRY(r.check_keys(t, "[logs]", {"max_size", "keep", "max_age", "drain", "drain_queue"}));
    if (const auto* n = t.get("max_age")) {
        TRY_ASSIGN(out.max_age, r.duration_at(*n, "logs.max_age"));
        if (out.max_age.count() > 0 && out.max_age < std::chrono::minutes(1))
            return r.error_at(n->source(), "logs.max_age must be at least 1m (or 0: no limit)");
    }
    if (const auto* n = t.get("drain")) {
        TRY_ASSIGN(out.drain, r.string_at(*n, "logs.drain"));
        if (auto target = parse_drain_url(out.drain); !out.drain.empty() && !target)
            return r.error_at(n->source(), "logs.drain: " + target.error().message);
    }
    if (const auto* n = t.get("drain_queue")) {
        TRY_ASSIGN(out.drain_queue, r.size_at(*n, "logs.drain_queue"));
        if (out.drain_queue < 64 * 1024)
            return r.error_at(n->source(), "logs.drain_queue must be at least 64k");
    }
    if (const auto* n = t.get("max_size")) {
        TRY_ASSIGN(out.max_size, r.size_at(*n, "logs.max_size"));
        if (out.max_size > 0 && out.max_size < 64 * 1024)
            return r.error_at(n->source(), "logs.max_size must be at least 64k (or 0: never "
                                           "rotated)");
    }
    if (const auto* n = t.get("keep")) {
        TRY_ASSIGN(std::int64_t keep, r.integer_at(*n, "logs.keep", 0, 100));
        out.keep = static_cast<int>(keep);
    }
    return {};
}

Status read_deploy(const Reader& r, const toml::table& t, DeploySettings& out) {
    TRY(r.check_keys(t, "[deploy]",
                     {"keep", "drain", "idle_stop", "idle_stop_workers", "strategy", "max_parallel",
                      "stop_timeout", "standby"}));
    if (const auto* n = t.get("standby")) {
        TRY_ASSIGN(out.standby, r.duration_at(*n, "deploy.standby"));
    }
    if (const auto* n = t.get("stop_timeout")) {
        TRY_ASSIGN(out.stop_timeout, r.duration_at(*n, "deploy.stop_timeout"));
    }
    if (const auto* n = t.get("keep")) {
        TRY_ASSIGN(std::int64_t keep, r.integer_at(*n, "deploy.keep", 1, 1000));
        out.keep = static_cast<int>(keep);
    }
    if (const auto* n = t.get("drain")) {
        TRY_ASSIGN(out.drain, r.duration_at(*n, "deploy.drain"));
    }
    if (const auto* n = t.get("idle_stop")) {
        TRY_ASSIGN(out.idle_stop, r.duration_at(*n, "deploy.idle_stop"));
        if (out.idle_stop.count() > 0 && out.idle_stop < std::chrono::seconds(1))
            return r.error_at(n->source(), "deploy.idle_stop must be at least 1s (or 0: never)");
    }
    if (const auto* n = t.get("idle_stop_workers")) {
        TRY_ASSIGN(out.idle_stop_workers, r.boolean_at(*n, "deploy.idle_stop_workers"));
    }
    if (const auto* n = t.get("strategy")) {
        TRY_ASSIGN(std::string text, r.string_at(*n, "deploy.strategy"));
        auto strategy = parse_strategy(text);
        if (!strategy) {
            std::string message = fmt::format(
                "deploy.strategy must be \"parallel\" or \"rolling\", not \"{}\"", text);
            if (auto guess = closest_match(text, {"parallel", "rolling"}))
                message += fmt::format("; did you mean \"{}\"?", *guess);
            return r.error_at(n->source(), message);
        }
        out.strategy = *strategy;
    }
    if (const auto* n = t.get("max_parallel")) {
        TRY_ASSIGN(std::int64_t max, r.integer_at(*n, "deploy.max_parallel", 1, 1000));
        out.max_parallel = static_cast<int>(max);
    }
    return {};
}

Status read_env(const Reader& r, const toml::table& t, std::map<std::string, std::string>& out) {
    for (auto&& [k, v] : t) {
        const std::string name(k.str());
        if (v.is_string())
            out[name] = *v.value<std::string>();
        else if (v.is_integer())
            out[name] = std::to_string(*v.value<std::int64_t>());
        else if (v.is_floating_point())
            out[name] = fmt::format("{}", *v.value<double>());
        else if (v.is_boolean())
            out[name] = *v.value<bool>() ? "true" : "false";
        else
            return r.error_at(v.source(),
                              fmt::format("env.{} must be a string, number or boolean", name));
    }
    return {};
}

Status read_agent_command(const Reader& r, const toml::node& n, TargetConfig& target) {
    TRY_ASSIGN(std::string text, r.string_at(n, "agent_command"));
    auto words = split_words(text);
    if (!words)
        return r.error_at(n.source(), "agent_command: " + words.error().message);
    if (words->empty())
        return r.error_at(n.source(), "agent_command is empty: leave it out for the default "
                                      "(deploy-agent dial-stdio), or give the command to run, "
                                      "e.g. \"/opt/deploy/bin/deploy-agent dial-stdio\"");
    target.agent_command = std::move(*words);
    return {};
}

// ca_file and fingerprint: how deployctl verifies an https:// agent.
Status read_tls_settings(const Reader& r, const toml::table& t, TargetConfig& target) {
    if (const auto* n = t.get("ca_file")) {
        TRY_ASSIGN(target.ca_file, r.string_at(*n, "ca_file"));
        if (target.ca_file.empty())
            return r.error_at(n->source(), "ca_file is empty: leave it out to use the system's "
                                           "CA store, or give a PEM CA bundle's path");
    }
    if (const auto* n = t.get("fingerprint")) {
        TRY_ASSIGN(std::string text, r.string_at(*n, "fingerprint"));
        auto parsed = parse_fingerprint(text);
        if (!parsed)
            return r.error_at(n->source(), "fingerprint: " + parsed.error().message);
        target.fingerprint = std::move(*parsed);
        if (!target.ca_file.empty())
            return r.error_at(n->source(),
                              "ca_file and fingerprint exclude each other: a pinned fingerprint "
                              "replaces the CA check; keep one");
    }
    return {};
}

Status read_target(const Reader& r, const toml::table& t, TargetConfig& target) {
    TRY(r.check_keys(t, "[targets." + target.name + "]",
                     {"hosts", "domains", "agent_command", "agent_socket", "identity_file",
                      "ca_file", "fingerprint"}));
    if (const auto* n = t.get("hosts")) {
        TRY_ASSIGN(target.hosts, r.strings_at(*n, "hosts"));
    }
    if (const auto* n = t.get("domains")) {
        TRY_ASSIGN(target.domains, r.strings_at(*n, "domains"));
    }
    if (const auto* n = t.get("agent_command"))
        TRY(read_agent_command(r, *n, target));
    if (const auto* n = t.get("agent_socket")) {
        TRY_ASSIGN(target.agent_socket, r.string_at(*n, "agent_socket"));
        if (!target.agent_socket->empty() && target.agent_socket->front() != '/')
            return r.error_at(n->source(),
                              "agent_socket must be an absolute path on the server (e.g. "
                              "\"/run/deploy-agent/agent.sock\"), or \"\" to always run "
                              "agent_command");
    }
    if (const auto* n = t.get("identity_file")) {
        TRY_ASSIGN(target.identity_file, r.string_at(*n, "identity_file"));
        if (target.identity_file.empty())
            return r.error_at(n->source(), "identity_file is empty: leave it out to use "
                                           "ssh-agent and ~/.ssh/id_*, or give a key's path");
    }
    return read_tls_settings(r, t, target);
}

Status read_targets(const Reader& r, const toml::table& t,
                    std::map<std::string, TargetConfig>& out) {
    for (auto&& [k, v] : t) {
        TargetConfig target;
        target.name = std::string(k.str());
        TRY_ASSIGN(const toml::table* table, r.table_at(v, "targets." + target.name));
        TRY(read_target(r, *table, target));
        out[target.name] = std::move(target);
    }
    return {};
}

// Names a process may not take: the streams and one-offs a release's log
// already uses.
constexpr std::string_view k_reserved_processes[] = {"build", "release", "run",   "cron",
                                                     "app",   "system",  "health"};

Status read_processes(const Reader& r, const toml::table& t, AppConfig& config) {
    if (t.empty())
        return r.error_at(t.source(), "[processes] is empty: name at least one process "
                                      "(web = \"...\", worker = \"...\"), or leave it out");
    config.no_web = true;
    for (auto&& [k, v] : t) {
        const std::string name(k.str());
        if (!is_valid_process_name(name))
            return r.error_at(v.source(),
                              fmt::format("process name \"{}\" must be 1-30 lower-case letters, "
                                          "digits or '-', starting with a letter",
                                          name));
        if (std::find(std::begin(k_reserved_processes), std::end(k_reserved_processes), name) !=
            std::end(k_reserved_processes))
            return r.error_at(v.source(), fmt::format("process name \"{}\" is reserved (a "
                                                      "stream of the release's log); pick another",
                                                      name));
        TRY_ASSIGN(std::string command, r.string_at(v, "processes." + name));
        const bool blank = command.find_first_not_of(" \t\r\n") == std::string::npos;
        if (blank && name != "web") // web = "": a container image's own CMD
            return r.error_at(v.source(), fmt::format("processes.{} must not be empty", name));
        if (blank)
            command.clear();
        if (name == "web") {
            if (!config.run.command.empty())
                return r.error_at(v.source(), "processes.web and run.command both give the web "
                                              "process's command; keep one");
            config.run.command = std::move(command);
            config.no_web = false;
        } else {
            config.processes[name] = std::move(command);
        }
    }
    if (config.static_site)
        return r.error_at(t.source(), "[processes] and [static] exclude each other: a static "
                                      "site runs no process");
    if (config.no_web && !config.run.command.empty())
        return r.error_at(t.source(), "run.command is the web process, but [processes] has no "
                                      "web: add web = \"...\" to [processes] (or remove "
                                      "run.command for a worker-only app)");
    return {};
}

template <class T, class Fn>
Status read_section(const Reader& r, const toml::table& root, const char* key, T& out, Fn fn) {
    const auto* node = root.get(key);
    if (!node)
        return {};
    TRY_ASSIGN(const toml::table* table, r.table_at(*node, fmt::format("[{}]", key)));
    return fn(r, *table, out);
}

Result<AppConfig> read_config(const Reader& r, const toml::table& root) {
    TRY(r.check_keys(root, "the top level",
                     {"app", "build", "run", "release", "git", "preview", "cron", "static",
                      "deploy", "logs", "proxy", "env", "targets", "processes"}));
    AppConfig config;
    const auto* app = root.get("app");
    if (!app)
        return r.error_in_file("missing required key 'app' (the application's name): add a "
                               "line app = \"NAME\" at the top");
    TRY_ASSIGN(config.app, r.string_at(*app, "app"));
    if (!is_valid_app_name(config.app))
        return r.error_at(app->source(), "app must be 1-63 lower-case letters, digits or '-', "
                                         "starting with a letter");
    TRY(read_section(r, root, "build", config.build, read_build));
    TRY(read_section(r, root, "run", config.run, read_run));
    TRY(read_section(r, root, "release", config.release, read_release));
    TRY(read_section(r, root, "git", config.git, read_git));
    if (root.get("preview")) {
        config.preview.emplace();
        TRY(read_section(r, root, "preview", *config.preview, read_preview));
    }
    if (const auto* cron = root.get("cron")) {
        TRY(read_cron(r, *cron, config.cron));
    }
    if (root.get("static")) {
        config.static_site.emplace();
        TRY(read_section(r, root, "static", *config.static_site, read_static));
    }
    TRY(read_section(r, root, "deploy", config.deploy, read_deploy));
    TRY(read_section(r, root, "logs", config.logs, read_logs));
    TRY(read_section(r, root, "proxy", config.proxy, read_proxy));
    TRY(read_section(r, root, "env", config.env, read_env));
    TRY(read_section(r, root, "targets", config.targets, read_targets));
    TRY(read_section(r, root, "processes", config, read_processes));
    return config;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    std::iota(row.begin(), row.end(), 0);
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] =
                std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

} // namespace

Result<AppConfig> parse_config(std::string_view text, std::string_view source_name) {
    Reader reader(text, source_name);
    try {
        const toml::table root = toml::parse(text, source_name);
        return read_config(reader, root);
    } catch (const toml::parse_error& e) {
        return reader.error_at(e.source(), std::string(e.description()));
    }
}

bool is_ssh_git_url(std::string_view url) {
    if (url.rfind("ssh://", 0) == 0)
        return url.size() > 6;
    // git's scp-like syntax: [USER@]HOST:PATH, with no "://" and no '/' before the ':'.
    if (url.find("://") != std::string_view::npos)
        return false;
    const auto colon = url.find(':');
    return colon != std::string_view::npos && colon > 0 && colon + 1 < url.size() &&
           url.substr(0, colon).find('/') == std::string_view::npos;
}

Result<std::string> preview_app_name(const std::string& app, int number) {
    auto name = fmt::format("{}-pr-{}", app, number);
    if (!is_valid_app_name(name))
        return make_error(ErrorKind::usage,
                          fmt::format("the preview of pull request {} would be app \"{}\", "
                                      "longer than the 63 characters an app name may have",
                                      number, name));
    return name;
}

Result<std::string> preview_config_text(std::string_view text, const std::string& app, int number) {
    TRY_ASSIGN(auto config, parse_config(text, "deploy.toml"));
    if (config.app != app)
        return make_error(ErrorKind::config,
                          fmt::format("deploy.toml: app = \"{}\" but the pull request is one of "
                                      "app \"{}\"",
                                      config.app, app));
    TRY_ASSIGN(auto name, preview_app_name(app, number));
    toml::table root;
    try {
        root = toml::parse(text, std::string_view("deploy.toml"));
    } catch (const toml::parse_error& e) {
        return make_error(ErrorKind::config, std::string(e.description()));
    }
    root.insert_or_assign("app", name);
    if (auto* targets = root.get_as<toml::table>("targets"))
        for (auto&& [target_name, target] : *targets)
            if (auto* table = target.as_table())
                if (auto* domains = table->get_as<toml::array>("domains")) {
                    toml::array renamed;
                    for (auto&& domain : *domains)
                        renamed.push_back(fmt::format("pr-{}.{}.{}", number, app,
                                                      domain.value_or(std::string())));
                    table->insert_or_assign("domains", std::move(renamed));
                }
    if (config.preview && !config.preview->env.empty()) {
        if (!root.get_as<toml::table>("env"))
            root.insert_or_assign("env", toml::table{});
        auto* env = root.get_as<toml::table>("env");
        for (const auto& [key, value] : config.preview->env)
            env->insert_or_assign(key, value);
    }
    root.erase("preview");
    std::ostringstream out;
    out << fmt::format("# The deploy.toml of {} as the preview of pull request {} "
                       "(docs/git.md)\n",
                       app, number)
        << root << '\n';
    TRY(parse_config(out.str(), "the preview's deploy.toml"));
    return out.str();
}

Result<AppConfig> load_config(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        return make_error(ErrorKind::config,
                          fmt::format("{}: no such file (run `deployctl init` to create one, or "
                                      "pass the app's directory)",
                                      path.string()));
    auto text = read_file(path);
    if (!text)
        return make_error(ErrorKind::config, text.error().message);
    return parse_config(*text, path.filename().string());
}

std::optional<DeployStrategy> parse_strategy(std::string_view text) {
    if (text == "parallel")
        return DeployStrategy::parallel;
    if (text == "rolling")
        return DeployStrategy::rolling;
    return std::nullopt;
}

Result<DrainTarget> parse_drain_url(std::string_view url) {
    auto bad = [&](std::string_view why) {
        return make_error(ErrorKind::usage,
                          fmt::format("'{}' {}: expected syslog+tcp://HOST[:PORT] or "
                                      "syslog+tls://HOST[:PORT][?ca=PATH]",
                                      url.substr(0, 200), why));
    };
    DrainTarget target;
    std::string_view rest;
    if (url.rfind("syslog+tcp://", 0) == 0) {
        rest = url.substr(13);
        target.port = 514;
    } else if (url.rfind("syslog+tls://", 0) == 0) {
        rest = url.substr(13);
        target.tls = true;
        target.port = 6514;
    } else {
        return bad("is not a drain URL");
    }
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        const auto query = rest.substr(q + 1);
        rest = rest.substr(0, q);
        if (!target.tls || query.rfind("ca=", 0) != 0 || query.size() == 3 ||
            query.find('&') != std::string_view::npos)
            return bad("has a query other than ?ca=PATH (syslog+tls:// only)");
        target.ca_file = std::string(query.substr(3));
        if (target.ca_file[0] != '/')
            return bad("has a ca= path that is not absolute (a path on the agent's host)");
    }
    std::string_view host = rest;
    if (!rest.empty() && rest.front() == '[') { // [IPv6]:port
        const auto close = rest.find(']');
        if (close == std::string_view::npos)
            return bad("has an unclosed [");
        host = rest.substr(1, close - 1);
        rest = rest.substr(close + 1);
        if (!rest.empty() && rest.front() != ':')
            return bad("has something after ] other than :PORT");
    } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        host = rest.substr(0, colon);
        rest = rest.substr(colon);
    } else {
        rest = {};
    }
    if (!rest.empty()) { // ":PORT"
        const auto port = rest.substr(1);
        if (port.empty() || port.size() > 5 ||
            port.find_first_not_of("0123456789") != std::string_view::npos ||
            std::stoi(std::string(port)) < 1 || std::stoi(std::string(port)) > 65535)
            return bad("has a port that is not a number from 1 to 65535");
        target.port = static_cast<std::uint16_t>(std::stoi(std::string(port)));
    }
    if (host.empty() || host.find_first_of("/@ ") != std::string_view::npos)
        return bad("has no host name");
    target.host = std::string(host);
    return target;
}

bool is_valid_process_name(std::string_view name) {
    return name.size() <= 30 && is_valid_app_name(name);
}

bool is_valid_branch_name(std::string_view name) {
    // git check-ref-format's rules, for refs/heads/NAME.
    if (name.empty() || name.size() > 255 || name == "@" || name.front() == '-' ||
        name.front() == '/' || name.back() == '/' || name.back() == '.' ||
        name.find("..") != std::string_view::npos || name.find("//") != std::string_view::npos ||
        name.find("@{") != std::string_view::npos)
        return false;
    for (unsigned char c : name)
        if (c < 0x20 || c == 0x7f ||
            std::string_view(" ~^:?*[\\").find(static_cast<char>(c)) != std::string_view::npos)
            return false;
    std::size_t start = 0;
    while (start <= name.size()) {
        auto end = name.find('/', start);
        if (end == std::string_view::npos)
            end = name.size();
        const auto component = name.substr(start, end - start);
        if (component.empty() || component.front() == '.' ||
            (component.size() >= 5 && component.substr(component.size() - 5) == ".lock"))
            return false;
        start = end + 1;
    }
    return true;
}

bool is_valid_app_name(std::string_view name) {
    if (name.empty() || name.size() > 63 || !(name[0] >= 'a' && name[0] <= 'z'))
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
}

std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates) {
    std::optional<std::string> best;
    std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
    for (const auto& candidate : candidates) {
        const auto d = edit_distance(word, candidate);
        if (d < best_distance) {
            best_distance = d;
            best = candidate;
        }
    }
    return best;
}

} // namespace common
