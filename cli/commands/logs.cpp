// deployctl logs [RELEASE|--all-releases] [-f] [--process NAME] [--access] [--grep RE]
// [--since T] [--until T] [-n N] [--timestamps] [--hold D]: build and app output of a release (or
// of every kept one), the output of one process of the PRODUCTION release (worker) or of a [[cron]]
// job (cron.NAME), or the app's access log (one line per request deploy-proxy answered); --grep,
// --since, --until and -n are applied by the agent, so only the lines shown travel. Several
// hosts are read at once and their lines merged by time (cli/log_merge.hpp).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/log_merge.hpp>
#include <cli/query.hpp>
#include <cli/target.hpp>
#include <common/duration.hpp>
#include <common/timestamp.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace cli::commands {

namespace {

// -f on several hosts: how long a line waits for the other hosts' lines of
// the same moment before it is shown (--hold).
constexpr std::chrono::milliseconds k_follow_hold{300};

struct LogsOptions {
    std::string release;              // empty: the PRODUCTION release
    std::string process;              // --process cron.NAME: that process's log instead
    bool access = false;              // the access log instead
    bool all_releases = false;        // every kept release's logs, oldest first
    std::string grep;                 // only the lines this pattern matches
    std::string since, until;         // only the lines of this time range (as given)
    bool timestamps = false;          // people see each line's time
    std::string hold;                 // -f on several hosts: the merge window ("" : k_follow_hold)
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
    for (const auto& [flag, text] :
         {std::pair{"--since", &options.since}, {"--until", &options.until}})
        if (!text->empty())
            if (auto at = common::parse_time_bound(*text, common::now_micros()); !at)
                return common::make_error(common::ErrorKind::usage,
                                          fmt::format("{}: {}", flag, at.error().message));
    auto hold = k_follow_hold;
    if (!options.hold.empty()) {
        auto parsed = common::parse_duration(options.hold);
        if (!parsed || *parsed > std::chrono::seconds(60))
            return common::make_error(common::ErrorKind::usage,
                                      fmt::format("--hold takes a duration up to 60s (300ms, 2s), "
                                                  "not '{}'",
                                                  options.hold));
        hold = *parsed;
    }
    if (options.follow && !options.until.empty())
        return common::make_error(common::ErrorKind::usage,
                                  "--until and -f: a followed log has no end (leave out one of "
                                  "them)");
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
    // Durations are the agent's to resolve: its clock stamped the lines.
    if (!options.since.empty())
        query.push_back("since=" + percent_encode(options.since));
    if (!options.until.empty())
        query.push_back("until=" + percent_encode(options.until));
    // Following the access log starts with the last 10 requests, as tail -f does.
    if (auto lines = options.lines                      ? options.lines
                     : options.follow && options.access ? std::optional<std::size_t>(10)
                                                        : std::nullopt)
        query.push_back(fmt::format("lines={}", *lines));
    if (options.follow)
        query.emplace_back("follow=1");
    std::string path = fmt::format("{}/logs{}{}", app_path(target->app), query.empty() ? "" : "?",
                                   fmt::join(query, "&"));
    auto read = [&](transport::Client& client, const std::string& host,
                    const std::function<bool(const nlohmann::json&)>& each) -> common::Status {
        auto st = client.stream_ndjson(path, [&](const nlohmann::json& event) {
            return event.value("event", "") == "done" || each(event);
        });
        if (!st)
            return with_release_hint(st.error(), options);
        if (options.follow)
            return common::make_error(common::ErrorKind::connection,
                                      fmt::format("the agent at {} ended the log stream", host));
        return {};
    };
    auto emit = [&](const std::string& host, const nlohmann::json& event) {
        ctx.out->emit(output::AgentEvent{host, event, options.timestamps});
        return true;
    };
    if (target->hosts.size() < 2)
        return for_each_host(ctx, *target, OnError::keep_going,
                             [&](transport::Client& client, const std::string& host) {
                                 return read(client, host, [&](const nlohmann::json& event) {
                                     return emit(host, event);
                                 });
                             });
    // Several hosts: every one read at once, their lines merged by time, each with its host.
    auto urls = host_urls(*target);
    if (!urls)
        return urls.error();
    ctx.out->set_several_hosts(true);
    LogMerge merge(urls->size(), options.follow ? hold : std::chrono::milliseconds(0));
    std::vector<std::thread> readers;
    for (std::size_t i = 0; i < urls->size(); ++i)
        readers.emplace_back([&, i] {
            const auto& url = (*urls)[i];
            auto client = ctx.connect(url, target->ssh, target->tls);
            auto st = client
                          ? read(**client, url.base_url,
                                 [&](const nlohmann::json& event) { return merge.push(i, event); })
                          : common::Status(client.error());
            merge.end(i, st);
        });
    common::Status first;
    merge.run([&](std::size_t i,
                  const nlohmann::json& event) { return emit((*urls)[i].base_url, event); },
              [&](std::size_t i, const common::Status& st) {
                  if (st)
                      return;
                  ctx.out->emit(output::Error{st.error(), (*urls)[i].base_url});
                  ctx.error_reported = true;
                  if (first)
                      first = st;
              });
    for (auto& reader : readers)
        reader.join();
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
                    "the PRODUCTION release, or cron.NAME for a [[cron]] job's runs")
        ->type_name("NAME");
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
        ->type_name("RE")
        ->check([](const std::string& pattern) {
            return pattern.size() > 1000 ? std::string("the pattern is longer than 1000 bytes")
                                         : std::string();
        });
    cmd->add_option("--since", options->since,
                    "Only the lines written since this time: a duration before now (30m, 2h, "
                    "1d) or a time (2026-12-04T10:00:00Z, '2026-12-04 10:00', 2026-12-04; UTC "
                    "unless it says its zone)")
        ->type_name("TIME");
    cmd->add_option("--until", options->until,
                    "Only the lines written before this time (as --since takes it)")
        ->type_name("TIME");
    cmd->add_flag("--timestamps", options->timestamps,
                  "Show the time each line was written (UTC; --json always has it as \"ts\")");
    cmd->add_option("--hold", options->hold,
                    "With -f on several hosts: how long a line waits for the other hosts' lines "
                    "of the same moment, to show them in time order (default 300ms; more on slow "
                    "links)")
        ->type_name("DURATION");
    cmd->add_option("-n,--lines", options->lines,
                    "Only the last N lines (of those --grep, --since and --until pick; of each "
                    "host); with --access the last N requests (default: all that is kept; 10 "
                    "with --access -f)")
        ->type_name("N")
        ->check(CLI::Range(0, 9999999));
    cmd->footer("Examples:\n  deployctl logs\n  deployctl logs v4\n  deployctl logs -f\n"
                "  deployctl logs --process worker -f\n  deployctl logs --process cron.cleanup\n"
                "  deployctl logs --access -n 100\n  deployctl logs --access -f\n"
                "  deployctl logs --grep 'timeout|refused' -n 50\n"
                "  deployctl logs --since 1h --grep '(?i)error' --timestamps\n"
                "  deployctl logs --since '2026-12-04 09:00' --until '2026-12-04 09:30'\n"
                "  deployctl logs --all-releases --grep 'OutOfMemory'\n"
                "  deployctl logs --access --grep '\"status\":5\\d\\d'\n");
    cmd->callback(
        [&ctx, options] { ctx.command = [&ctx, options] { return logs(ctx, *options); }; });
}

} // namespace cli::commands
