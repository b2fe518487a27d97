#include <cli/fleet.hpp>
#include <cli/output/format.hpp>
#include <common/state.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

namespace cli {

namespace {

using common::ErrorKind;
using Clock = std::chrono::steady_clock;

std::int64_t ms_since(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

HostOutcome outcome_of(const common::Error& error) {
    switch (error.kind) {
    case ErrorKind::failed:
        return HostOutcome::failed;
    case ErrorKind::connection:
    case ErrorKind::auth:
        return HostOutcome::unreachable;
    default:
        return HostOutcome::error;
    }
}

// Hands out hosts to the workers. The first `batch` always start (together); after a
// failure, no more.
class Queue {
  public:
    Queue(std::size_t size, std::size_t batch) : m_size(size), m_batch(batch) {}
    std::optional<std::size_t> next() {
        std::lock_guard lock(m_mutex);
        if (m_next >= m_size || (m_failed && m_next >= m_batch))
            return std::nullopt;
        return m_next++;
    }
    void failed() {
        std::lock_guard lock(m_mutex);
        m_failed = true;
    }

  private:
    std::mutex m_mutex;
    std::size_t m_size;
    std::size_t m_batch;
    std::size_t m_next = 0;
    bool m_failed = false;
};

void deploy_one(const HostUrl& url, HostRun& run, const OpenHost& open, const HostSteps& steps,
                const FleetOptions& options, output::GroupedOutput& out, Clock::time_point t0) {
    auto printer = out.for_host(run.host);
    auto started = Clock::now();
    run.started_ms = ms_since(t0);
    auto client = open(url);
    common::Status st = client ? common::Status() : common::Status(client.error());
    if (client) {
        run.client = std::move(*client);
        st = steps.deploy(*run.client, run, *printer);
    }
    run.elapsed_ms = ms_since(started);
    if (st) {
        // A host that already served the tree is live, followed or not.
        run.outcome = options.follow || run.unchanged ? HostOutcome::live : HostOutcome::queued;
    } else {
        run.outcome = outcome_of(st.error());
        run.error = st.error();
        if (options.several)
            printer->emit(output::Error{st.error(), run.host});
    }
    out.finish(run.host);
}

void roll_back_one(HostRun& run, const HostSteps& steps, output::GroupedOutput& out) {
    auto printer = out.for_host(run.host);
    auto st = run.client ? steps.roll_back(*run.client, run, *printer)
                         : common::Status(common::make_error(ErrorKind::internal,
                                                             "no connection to roll back with"));
    if (st) {
        run.rolled_back = true;
    } else {
        run.rollback_error = common::Error{
            st.error().kind, fmt::format("rollback to {} failed: {}; {} is still live",
                                         run.previous, st.error().message, run.release)};
        printer->emit(output::Error{*run.rollback_error, run.host});
    }
    out.finish(run.host);
}

// Runs fn(i) for every i on `workers` threads at once (in order of i).
template <typename Fn> void on_threads(std::size_t workers, Queue& queue, Fn fn) {
    std::vector<std::thread> threads;
    for (std::size_t w = 0; w < workers; ++w)
        threads.emplace_back([&] {
            while (auto i = queue.next())
                fn(*i);
        });
    for (auto& t : threads)
        t.join();
}

} // namespace

std::size_t parallelism(const FleetOptions& options, std::size_t hosts) {
    if (hosts == 0)
        return 0;
    if (options.strategy == common::DeployStrategy::rolling)
        return 1;
    if (options.max_parallel <= 0)
        return hosts;
    return std::min(hosts, static_cast<std::size_t>(options.max_parallel));
}

bool succeeded(HostOutcome outcome) {
    return outcome == HostOutcome::live || outcome == HostOutcome::queued;
}

RollbackDecision decide_rollback(const HostRun& run, bool any_failed, bool rollback_enabled) {
    // A host whose release failed still serves its previous one (the agent switches only a
    // healthy release); a queued one (--no-follow) may yet go live: neither is touched.
    // A host that already served the tree switched nothing either.
    if (!any_failed || run.outcome != HostOutcome::live || run.unchanged)
        return RollbackDecision::none;
    if (!rollback_enabled)
        return RollbackDecision::keep_no_rollback;
    if (run.previous.empty())
        return RollbackDecision::keep_first_deploy;
    return RollbackDecision::roll_back;
}

std::vector<HostRun> run_fleet(const std::vector<HostUrl>& urls, const OpenHost& open,
                               const HostSteps& steps, const FleetOptions& options,
                               output::GroupedOutput& out) {
    std::vector<HostRun> runs(urls.size());
    for (std::size_t i = 0; i < urls.size(); ++i) {
        runs[i].host = urls[i].base_url;
        out.for_host(runs[i].host); // the phase line lists every host from the start
    }
    auto t0 = Clock::now();
    // [[cron]] jobs run on the first host only.
    for (std::size_t i = 1; i < runs.size(); ++i)
        runs[i].cron = false;
    // The [release] command runs once, on the first host, before any other host starts.
    std::size_t first = 0;
    if (options.release_first && urls.size() > 1) {
        for (std::size_t i = 1; i < runs.size(); ++i)
            runs[i].release_command = false;
        deploy_one(urls[0], runs[0], open, steps, options, out, t0);
        first = succeeded(runs[0].outcome) ? 1 : urls.size();
    }
    const std::size_t rest = urls.size() - first;
    auto workers = parallelism(options, rest);
    Queue queue(rest, workers);
    on_threads(workers, queue, [&](std::size_t k) {
        const std::size_t i = first + k;
        deploy_one(urls[i], runs[i], open, steps, options, out, t0);
        if (!succeeded(runs[i].outcome))
            queue.failed();
    });
    bool any_failed = std::any_of(runs.begin(), runs.end(),
                                  [](const HostRun& r) { return !succeeded(r.outcome); });
    std::vector<std::size_t> to_roll_back;
    for (std::size_t i = 0; i < runs.size(); ++i) {
        runs[i].rollback = decide_rollback(runs[i], any_failed, options.rollback);
        if (runs[i].rollback == RollbackDecision::roll_back)
            to_roll_back.push_back(i);
    }
    out.flush_all();
    if (to_roll_back.empty())
        return runs;
    Queue rollbacks(to_roll_back.size(), to_roll_back.size());
    on_threads(to_roll_back.size(), rollbacks,
               [&](std::size_t k) { roll_back_one(runs[to_roll_back[k]], steps, out); });
    out.flush_all();
    return runs;
}

namespace {

output::SummaryRow summary_row(const HostRun& run) {
    output::SummaryRow row;
    row.host = run.host;
    row.release = run.release;
    row.previous = run.previous;
    if (run.started_ms >= 0)
        row.elapsed_ms = run.elapsed_ms;
    if (run.error)
        row.note = run.error->message;
    switch (run.outcome) {
    case HostOutcome::not_started:
        row.state = "NOT_STARTED";
        row.note = "not started: another host failed first";
        break;
    case HostOutcome::unreachable:
        row.state = "UNREACHABLE";
        break;
    case HostOutcome::error:
        row.state = "ERROR";
        break;
    case HostOutcome::failed:
        row.state = "FAILED";
        if (!run.previous.empty())
            row.note += fmt::format(" ({} still live)", run.previous);
        break;
    case HostOutcome::queued:
        row.state = "QUEUED";
        break;
    case HostOutcome::live:
        row.state = run.canary ? "CANARY" : "PRODUCTION";
        if (run.unchanged)
            row.note = "already served it: nothing to do";
        break;
    }
    if (run.rollback_error) {
        row.state = "ROLLBACK_FAILED";
        row.note = run.rollback_error->message;
    } else if (run.rolled_back) {
        row.state = "ROLLED_BACK";
        row.note = run.canary ? fmt::format("rolled back: canary {} aborted, {} still live",
                                            run.release, run.previous)
                              : fmt::format("rolled back: {} is live again", run.previous);
    } else if (run.rollback == RollbackDecision::keep_first_deploy) {
        row.note = "kept: a first deploy, no earlier release to go back to";
    } else if (run.rollback == RollbackDecision::keep_no_rollback) {
        row.note = "kept: --no-rollback";
    }
    return row;
}

// The release a host serves after the deploy, as far as we know.
std::string live_release(const HostRun& run) {
    if (run.outcome != HostOutcome::live)
        return run.previous;
    return run.rolled_back ? run.previous : run.release;
}

// The higher, the more it says about what went wrong (fleet_result): a failed deployment,
// then by exit code 3 (unreachable, auth), 4 (timeout), 5 (refused), 2 (usage), 1 (others).
int severity(ErrorKind kind) {
    if (kind == ErrorKind::failed)
        return 6;
    switch (common::exit_code(kind)) {
    case 3:
        return 5;
    case 4:
        return 4;
    case 5:
        return 3;
    case 2:
        return 2;
    default:
        return 1;
    }
}

} // namespace

output::Summary summarize(const std::vector<HostRun>& runs, const FleetOptions& options,
                          std::int64_t elapsed_ms) {
    output::Summary summary;
    summary.command = "deploy";
    summary.strategy = options.strategy == common::DeployStrategy::rolling ? "rolling" : "parallel";
    summary.elapsed_ms = elapsed_ms;
    for (const auto& run : runs)
        summary.rows.push_back(summary_row(run));
    auto result = fleet_result(runs);
    summary.ok = result.ok();
    summary.exit_code = result ? 0 : common::exit_code(result.error().kind);
    for (const auto& run : runs)
        if (live_release(run) != live_release(runs.front()))
            summary.consistent = false;
    return summary;
}

common::Status fleet_result(const std::vector<HostRun>& runs) {
    const HostRun* worst = nullptr;
    std::size_t failed_hosts = 0, rollback_failures = 0;
    for (const auto& run : runs) {
        if (run.rollback_error)
            ++rollback_failures;
        if (!run.error)
            continue;
        ++failed_hosts;
        if (!worst || severity(run.error->kind) > severity(worst->error->kind))
            worst = &run;
    }
    if (!worst && rollback_failures == 0)
        return {};
    std::size_t rolled_back =
        std::count_if(runs.begin(), runs.end(), [](const HostRun& r) { return r.rolled_back; });
    ErrorKind kind = rollback_failures ? ErrorKind::failed : worst->error->kind;
    std::string message = fmt::format("the deploy failed on {} of {} host{}", failed_hosts,
                                      runs.size(), runs.size() == 1 ? "" : "s");
    if (worst)
        message += fmt::format(" ({}: {})", worst->host, worst->error->message);
    if (rolled_back)
        message += fmt::format("; {} host{} rolled back", rolled_back, rolled_back == 1 ? "" : "s");
    if (rollback_failures)
        message += fmt::format("; {} rollback{} failed", rollback_failures,
                               rollback_failures == 1 ? "" : "s");
    return common::make_error(kind, message);
}

} // namespace cli

namespace cli {

std::string serves_text(const nlohmann::json& release) {
    auto commit = output::json_str(release, "commit");
    if (commit.empty())
        return "";
    bool dirty = release.is_object() && release.value("dirty", false);
    return output::short_commit(commit) + (dirty ? "+dirty" : "");
}

HostView host_view(const std::string& host, const nlohmann::json& release, std::string note) {
    HostView view;
    view.host = host;
    view.note = std::move(note);
    if (!release.is_object())
        return view;
    view.production = output::json_str(release, "id");
    view.commit = output::json_str(release, "commit");
    view.dirty = release.value("dirty", false);
    view.tree_digest = output::json_str(release, "tree_digest");
    view.config_digest = output::json_str(release, "config_digest");
    return view;
}

namespace {

// What differs between what two hosts serve (empty: the same).
std::vector<std::string> differences(const HostView& a, const HostView& b) {
    if (a.production.empty() || b.production.empty()) {
        if (a.production.empty() == b.production.empty())
            return {};
        return {"release"};
    }
    const bool digests = !a.tree_digest.empty() && !b.tree_digest.empty() &&
                         !a.config_digest.empty() && !b.config_digest.empty();
    std::vector<std::string> parts;
    if (a.commit != b.commit)
        parts.push_back("commit");
    if (digests) {
        if (a.tree_digest != b.tree_digest)
            parts.push_back("tree");
        if (a.config_digest != b.config_digest)
            parts.push_back("config");
    } else if (a.production != b.production) {
        parts.push_back("unknown"); // another id, and nothing to compare the content by
    }
    return parts;
}

} // namespace

output::Summary compare_hosts(const std::string& command, const std::vector<HostView>& views) {
    output::Summary summary;
    summary.command = command;
    const HostView* first = nullptr;
    const common::Error* worst = nullptr;
    for (const auto& view : views) {
        output::SummaryRow row;
        row.host = view.host;
        row.release = view.production;
        row.note = view.note;
        row.commit = view.commit;
        row.dirty = view.dirty;
        if (view.error) {
            row.state =
                outcome_of(*view.error) == HostOutcome::unreachable ? "UNREACHABLE" : "ERROR";
            row.note = view.error->message;
            summary.ok = false;
            if (!worst || severity(view.error->kind) > severity(worst->kind))
                worst = &*view.error;
        } else {
            row.state = view.production.empty() ? "NONE" : "PRODUCTION";
            if (!first)
                first = &view;
            else
                row.differs = differences(*first, view);
            if (!row.differs.empty())
                summary.consistent = false;
        }
        summary.rows.push_back(std::move(row));
    }
    summary.exit_code = worst ? common::exit_code(worst->kind) : 0;
    return summary;
}

} // namespace cli

namespace cli {

std::string fleet_release_id(const std::vector<std::string>& next_ids) {
    std::string best;
    std::int64_t highest = 0;
    for (const auto& id : next_ids)
        if (auto number = common::release_number(id); number && *number > highest) {
            highest = *number;
            best = id;
        }
    return best;
}

namespace {

// The app's next free release id on one agent: "v1" where the app is unknown.
common::Result<std::string> next_release(transport::Client& client, const std::string& app) {
    auto status = client.get_json(app_path(app));
    if (!status && status.error().kind == ErrorKind::not_found)
        return std::string("v1");
    if (!status)
        return status.error();
    auto next = output::json_str(*status, "next_release");
    if (!common::release_number(next))
        return common::make_error(ErrorKind::internal,
                                  fmt::format("the agent at {} did not say its next release id "
                                              "(\"next_release\"); upgrade deploy-agent there",
                                              client.url()));
    return next;
}

} // namespace

std::vector<std::string>
ask_next_releases(const std::vector<HostUrl>& urls, const OpenHost& open, const std::string& app,
                  std::map<std::string, std::unique_ptr<transport::Client>>& clients) {
    std::vector<std::string> ids(urls.size());
    std::vector<std::unique_ptr<transport::Client>> opened(urls.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < urls.size(); ++i)
        threads.emplace_back([&, i] {
            auto client = open(urls[i]);
            if (!client)
                return;
            if (auto next = next_release(**client, app))
                ids[i] = *next;
            opened[i] = std::move(*client);
        });
    for (auto& t : threads)
        t.join();
    std::vector<std::string> answered;
    for (std::size_t i = 0; i < urls.size(); ++i) {
        if (opened[i])
            clients[urls[i].base_url] = std::move(opened[i]);
        if (!ids[i].empty())
            answered.push_back(ids[i]);
    }
    return answered;
}

common::Result<nlohmann::json> FleetReleaseId::create(const std::string& host, const Create& create,
                                                      const AskNext& ask_next,
                                                      output::Printer& out) {
    std::lock_guard lock(m_mutex);
    auto created = create(m_id);
    if (created) {
        ++m_created;
        return created;
    }
    if (created.error().kind != ErrorKind::refused)
        return created;
    auto next = ask_next();
    if (!next)
        return created;
    auto wanted = common::release_number(m_id);
    auto free = common::release_number(*next);
    if (!wanted || !free || *free <= *wanted)
        return created; // refused for another reason
    if (m_created > 0 || m_moved)
        return common::make_error(
            ErrorKind::refused,
            fmt::format("{} was taken on {} by another deploy meanwhile (its next free id is "
                        "now {}), and {} host{} already {} {}: run the deploy again",
                        m_id, host, *next, m_created, m_created == 1 ? "" : "s",
                        m_created == 1 ? "has" : "have", m_id));
    out.emit(output::Warning{fmt::format("{} was taken on {} by another deploy meanwhile; every "
                                         "host gets {} instead",
                                         m_id, host, *next)});
    m_moved = true;
    m_id = *next;
    created = create(m_id);
    if (created)
        ++m_created;
    return created;
}

std::string FleetReleaseId::id() const {
    std::lock_guard lock(m_mutex);
    return m_id;
}

namespace {

// A host's release object with this id in its status object (nullptr: none).
const nlohmann::json* find_release(const nlohmann::json& status, const std::string& id) {
    auto it = status.find("releases");
    if (it == status.end() || !it->is_array())
        return nullptr;
    for (const auto& release : *it)
        if (output::json_str(release, "id") == id)
            return &release;
    return nullptr;
}

std::string described(const nlohmann::json* release, const std::string& id) {
    auto serves = release ? serves_text(*release) : "";
    return serves.empty() ? id : fmt::format("{} ({})", id, serves);
}

std::string joined(const std::vector<std::string>& items) {
    std::string text;
    for (std::size_t i = 0; i < items.size(); ++i)
        text += (i == 0 ? "" : i + 1 == items.size() ? " and " : ", ") + items[i];
    return text;
}

} // namespace

common::Result<std::vector<RollbackStep>>
plan_fleet_rollback(const std::vector<RollbackView>& views, const std::string& requested) {
    std::vector<RollbackStep> steps;
    for (const auto& view : views)
        if (view.error || !view.status)
            return common::make_error(view.error ? view.error->kind : ErrorKind::internal,
                                      fmt::format("nothing switched: {}: {}", view.host,
                                                  view.error ? view.error->message : "no answer"));
    std::vector<std::string> missing, unusable, nothing;
    for (const auto& view : views) {
        const auto& status = **view.status;
        RollbackStep step;
        step.host = view.host;
        step.production = output::json_str(status, "production");
        step.target = requested.empty() ? output::json_str(status, "previous") : requested;
        if (step.target.empty()) {
            nothing.push_back(view.host);
            continue;
        }
        const auto* release = find_release(status, step.target);
        auto state = release ? output::json_str(*release, "state") : "";
        if (!release)
            missing.push_back(view.host);
        else if (state != "INACTIVE" && state != "PRODUCTION")
            unusable.push_back(fmt::format("{} is {} on {}", step.target, state, view.host));
        step.unchanged = state == "PRODUCTION";
        steps.push_back(std::move(step));
    }
    if (!nothing.empty())
        return common::make_error(
            ErrorKind::refused,
            fmt::format("nothing switched: {} {} no earlier release to roll back to (see "
                        "deployctl releases)",
                        joined(nothing), nothing.size() == 1 ? "has" : "have"));
    if (!missing.empty())
        return common::make_error(
            ErrorKind::not_found,
            fmt::format("nothing switched: {} {} no release {} (removed, or never deployed "
                        "there); every host needs it, INACTIVE or PRODUCTION (see deployctl "
                        "releases)",
                        joined(missing), missing.size() == 1 ? "has" : "have", requested));
    if (!unusable.empty())
        return common::make_error(
            ErrorKind::refused,
            fmt::format("nothing switched: {}; only an INACTIVE or PRODUCTION release can be "
                        "gone back to",
                        joined(unusable)));
    if (requested.empty()) {
        // Each host's own previous release: they must be the same release.
        std::vector<HostView> targets;
        for (std::size_t i = 0; i < views.size(); ++i)
            targets.push_back(
                host_view(views[i].host, *find_release(**views[i].status, steps[i].target), ""));
        bool agree = true;
        for (const auto& target : targets)
            agree = agree && differences(targets.front(), target).empty();
        if (!agree) {
            std::vector<std::string> where;
            for (std::size_t i = 0; i < views.size(); ++i)
                where.push_back(fmt::format(
                    "{} to {}", views[i].host,
                    described(find_release(**views[i].status, steps[i].target), steps[i].target)));
            return common::make_error(
                ErrorKind::refused,
                fmt::format("nothing switched: the hosts would go back to different releases: "
                            "{}; name one every host has: deployctl rollback ID",
                            joined(where)));
        }
    }
    return steps;
}

} // namespace cli

namespace cli {

void report_hosts(Context& ctx, const Target& target, const std::string& command,
                  const std::map<std::string, HostView>& views,
                  const std::map<std::string, common::Error>& errors) {
    auto urls = host_urls(target);
    if (!urls || urls->size() < 2)
        return;
    std::vector<HostView> ordered;
    for (const auto& url : *urls) {
        if (auto it = views.find(url.base_url); it != views.end()) {
            ordered.push_back(it->second);
            continue;
        }
        HostView view;
        view.host = url.base_url;
        auto error = errors.find(url.base_url);
        view.error =
            error != errors.end() ? error->second : common::Error{ErrorKind::internal, "no answer"};
        ordered.push_back(std::move(view));
    }
    ctx.out->emit(compare_hosts(command, ordered));
}

} // namespace cli
