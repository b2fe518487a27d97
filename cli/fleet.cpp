#include <cli/fleet.hpp>

#include <fmt/format.h>

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
    auto workers = parallelism(options, urls.size());
    Queue queue(urls.size(), workers);
    on_threads(workers, queue, [&](std::size_t i) {
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
        row.state = "PRODUCTION";
        if (run.unchanged)
            row.note = "already served it: nothing to do";
        break;
    }
    if (run.rollback_error) {
        row.state = "ROLLBACK_FAILED";
        row.note = run.rollback_error->message;
    } else if (run.rolled_back) {
        row.state = "ROLLED_BACK";
        row.note = fmt::format("rolled back: {} is live again", run.previous);
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
            else if (view.production != first->production)
                summary.consistent = false;
        }
        summary.rows.push_back(std::move(row));
    }
    summary.exit_code = worst ? common::exit_code(worst->kind) : 0;
    return summary;
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
