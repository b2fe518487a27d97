// deployctl logs [RELEASE|--all-releases] [-f] [--process NAME] [--access] [--grep RE] [-n N]:
// build and app output of a release (or of every kept one), the output of one process of the
// PRODUCTION release (worker) or of a [[cron]] job (cron.NAME), or the app's access log (one
// line per request deploy-proxy answered); --grep and -n are applied by the agent, so only the
// lines shown travel.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/query.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace cli::commands {

namespace {

struct LogsOptions {
    std::string release;              // empty: the PRODUCTION release
    std::string process;              // --process cron.NAME: that process's log instead
    bool access = false;              // the access log instead
    bool all_releases = false;        // every kept release's logs, oldest first
    std::string grep;                 // only the lines this pattern matches
    std::optional<std::size_t> lines; // only the last N (matching) lines
    bool follow = false;
};

// Without a release, the agent answers not_found when the app has no
// PRODUCTION release: say how to name one on this command line.
common::Error with_release_hint(common::Error error, const LogsOptions& options) {
    if (options.release.empty() && error.kind == common::ErrorKind::not_found &&
        error.message.find("no PRODUCTION release") != std::string::npos)
        error.message += " with `deployctl logs RELEASE` (`deployctl releases` lists them)";
    return error;
}

common::Status logs(Context& ctx, const LogsOptions& options) {
    if (!options.release.empty())
        if (auto st = check_release_id(options.release); !st)
            return st;
    if (!options.process.empty() && !options.release.empty())
        return common::make_error(common::ErrorKind::usage,
                                  "logs takes a RELEASE or --process, not both");
    if (options.all_releases &&
        (options.access || !options.process.empty() || !options.release.empty() || options.follow))
        return common::make_error(common::ErrorKind::usage,
                                  "--all-releases shows every kept release's logs: it takes no "
                                  "RELEASE, --process, --access or -f");
    if (options.access && (!options.process.empty() || !options.release.empty()))
        return common::make_error(common::ErrorKind::usage,
                                  "--access shows the app's one access log: it takes no RELEASE "
                                  "or --process");
    if (!options.process.empty() &&
        options.process.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-.") !=
            std::string::npos)
        return common::make_error(common::ErrorKind::usage,
                                  "--process takes a process name such as worker or cron.NAME");
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    std::vector<std::string> query;
    if (!options.release.empty())
        query.push_back(fmt::format("release={}", options.release));
    if (!options.process.empty())
        query.push_back(fmt::format("process={}", options.process));
    if (options.access)
        query.emplace_back("access=1");
    if (options.all_releases)
        query.emplace_back("all=1");
    if (!options.grep.empty())
        query.push_back("grep=" + percent_encode(options.grep));
    // Following the access log starts with the last 10 requests, as tail -f does.
    if (auto lines = options.lines                      ? options.lines
                     : options.follow && options.access ? std::optional<std::size_t>(10)
                                                        : std::nullopt)
        query.push_back(fmt::format("lines={}", *lines));
    if (options.follow)
        query.emplace_back("follow=1");
    std::string path = fmt::format("{}/logs{}{}", app_path(target->app), query.empty() ? "" : "?",
                                   fmt::join(query, "&"));
    std::mutex out_mutex; // -f on several hosts: one thread each
    auto stream = [&](transport::Client& client, const std::string& host) -> common::Status {
        auto st = client.stream_ndjson(path, [&](const nlohmann::json& event) {
            if (event.value("event", "") != "done") {
                std::lock_guard lock(out_mutex);
                ctx.out->emit(output::AgentEvent{host, event});
            }
            return true;
        });
        if (!st)
            return with_release_hint(st.error(), options);
        if (options.follow)
            return common::make_error(common::ErrorKind::connection,
                                      fmt::format("the agent at {} ended the log stream", host));
        return {};
    };
    if (!options.follow || target->hosts.size() < 2)
        return for_each_host(ctx, *target, OnError::keep_going, stream);
    // Following several hosts: every one at once, each line as it comes, with its host.
    auto urls = host_urls(*target);
    if (!urls)
        return urls.error();
    ctx.out->set_several_hosts(true);
    common::Status first;
    std::vector<std::thread> threads;
    for (const auto& url : *urls)
        threads.emplace_back([&, url] {
            auto client = ctx.connect(url, target->ssh, target->tls);
            auto st = client ? stream(**client, url.base_url) : common::Status(client.error());
            std::lock_guard lock(out_mutex);
            ctx.out->emit(output::Error{st.error(), url.base_url}); // -f ends with an error
            ctx.error_reported = true;
            if (first)
                first = st;
        });
    for (auto& thread : threads)
        thread.join();
    return first;
}

} // namespace

void add_logs(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<LogsOptions>();
    auto* cmd = app.add_subcommand("logs", "Show build and app output of a release");
    cmd->add_option("RELEASE", options->release, "Release id (default: the PRODUCTION release)");
    cmd->add_flag("-f,--follow", options->follow,
                  "Keep streaming new lines (from every host of the target at once)");
    cmd->add_option("--process", options->process,
                    "Show one process's log instead: a process of [processes] (web, worker) of "
                    "the PRODUCTION release, or cron.NAME for a [[cron]] job's runs");
    cmd->add_flag("--access", options->access,
                  "Show the app's access log instead: one line per request deploy-proxy "
                  "answered (time, client, method, host, path, status, duration, bytes, "
                  "instance, request id)");
    cmd->add_flag("--all-releases", options->all_releases,
                  "Show every kept release's build and app output, oldest first (with --grep: "
                  "search them all)");
    cmd->add_option("--grep", options->grep,
                    "Only the lines this pattern matches (Perl syntax, searched by the agent: "
                    "only matching lines travel; (?i) ignores case)")
        ->check([](const std::string& pattern) {
            return pattern.size() > 1000 ? std::string("the pattern is longer than 1000 bytes")
                                         : std::string();
        });
    cmd->add_option("-n,--lines", options->lines,
                    "Only the last N lines (of those --grep matches); with --access the last N "
                    "requests (default: all that is kept; 10 with --access -f)")
        ->check(CLI::Range(0, 9999999));
    cmd->footer("Examples:\n  deployctl logs\n  deployctl logs v4\n  deployctl logs -f\n"
                "  deployctl logs --process worker -f\n  deployctl logs --process cron.cleanup\n"
                "  deployctl logs --access -n 100\n  deployctl logs --access -f\n"
                "  deployctl logs --grep 'timeout|refused' -n 50\n"
                "  deployctl logs --all-releases --grep 'OutOfMemory'\n"
                "  deployctl logs --access --grep '\"status\":5\\d\\d'\n");
    cmd->callback(
        [&ctx, options] { ctx.command = [&ctx, options] { return logs(ctx, *options); }; });
}

} // namespace cli::commands
