#include <cli/fleet.hpp>
#include <cli/output/grouped.hpp>
#include <cli/output/json_events.hpp>
#include <common/state.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

using cli::HostOutcome;
using cli::RollbackDecision;
using common::ErrorKind;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace out = cli::output;

namespace {

// A client nobody calls: the fake steps below do the work.
class FakeClient final : public cli::transport::Client {
  public:
    explicit FakeClient(std::string url) : m_url(std::move(url)) {}
    const std::string& url() const override { return m_url; }
    common::Result<json> get_json(std::string_view) override { return json::object(); }
    common::Result<json> post_json(std::string_view, const json&) override {
        return json::object();
    }
    common::Result<json> put_blob(std::string_view, std::string_view) override {
        return json::object();
    }
    common::Result<json> remove(std::string_view) override { return json::object(); }
    common::Status stream_ndjson(std::string_view, const cli::transport::LineHandler&) override {
        return {};
    }

  private:
    std::string m_url;
};

std::vector<cli::HostUrl> hosts(int n) {
    std::vector<cli::HostUrl> urls;
    for (int i = 1; i <= n; ++i) {
        cli::HostUrl url;
        url.host = "127.0.0.1";
        url.port = 7070 + i;
        url.base_url = "http://127.0.0.1:" + std::to_string(url.port);
        urls.push_back(url);
    }
    return urls;
}

// A fleet of fake hosts: which fail how, what ran when, at most how many at once.
struct FakeFleet {
    std::set<std::string> unreachable;  // open() fails
    std::set<std::string> failing;      // the deployment fails (health check)
    std::set<std::string> first_deploy; // no release before
    std::set<std::string> rollback_fails;
    std::set<std::string> serving; // already serves the tree: nothing created (v1 stays)
    bool canary = false;           // deploy --canary: v2 becomes CANARY, v1 stays PRODUCTION
    int work_ms = 30;

    std::mutex mutex;
    std::vector<std::string> started, finished, rolled_back;
    std::map<std::string, bool> release_command; // what each host was asked
    std::map<std::string, Clock::time_point> start_at, end_at;
    std::atomic<int> running{0}, max_running{0};

    cli::OpenHost open() {
        return [this](const cli::HostUrl& url)
                   -> common::Result<std::unique_ptr<cli::transport::Client>> {
            if (unreachable.count(url.base_url))
                return common::make_error(ErrorKind::connection, "cannot reach " + url.base_url);
            return std::unique_ptr<cli::transport::Client>(new FakeClient(url.base_url));
        };
    }

    cli::HostSteps steps() {
        cli::HostSteps s;
        s.deploy = [this](cli::transport::Client&, cli::HostRun& run,
                          out::Printer& p) -> common::Status {
            {
                std::lock_guard lock(mutex);
                started.push_back(run.host);
                start_at[run.host] = Clock::now();
                release_command[run.host] = run.release_command;
            }
            int now = ++running;
            int seen = max_running.load();
            while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
            }
            run.previous = first_deploy.count(run.host) ? "" : "v1";
            if (serving.count(run.host)) {
                run.release = "v1";
                run.unchanged = true;
                --running;
                return {};
            }
            run.release = "v2";
            run.canary = canary;
            p.emit(out::Created{run.host, "v2", "QUEUED"});
            std::this_thread::sleep_for(std::chrono::milliseconds(work_ms));
            --running;
            {
                std::lock_guard lock(mutex);
                finished.push_back(run.host);
                end_at[run.host] = Clock::now();
            }
            if (failing.count(run.host))
                return common::make_error(ErrorKind::failed, "v2 failed: health check");
            return {};
        };
        s.roll_back = [this](cli::transport::Client&, const cli::HostRun& run,
                             out::Printer&) -> common::Status {
            std::lock_guard lock(mutex);
            rolled_back.push_back(run.host + (run.canary ? " abort " + run.release
                                                         : "->" + run.previous));
            if (rollback_fails.count(run.host))
                return common::make_error(ErrorKind::connection, "gone");
            return {};
        };
        return s;
    }

    std::vector<cli::HostRun> run(int n, cli::FleetOptions options) {
        std::ostringstream o, e;
        auto printer = out::make_human_printer({}, o, e);
        out::GroupedOutput grouped(*printer, out::GroupedOutput::Mode::grouped, nullptr);
        return cli::run_fleet(hosts(n), open(), steps(), options, grouped);
    }
};

const std::string h1 = "http://127.0.0.1:7071";
const std::string h2 = "http://127.0.0.1:7072";
const std::string h3 = "http://127.0.0.1:7073";

cli::FleetOptions rolling() {
    cli::FleetOptions o;
    o.strategy = common::DeployStrategy::rolling;
    o.several = true;
    return o;
}

cli::FleetOptions parallel(int max = 0) {
    cli::FleetOptions o;
    o.max_parallel = max;
    o.several = true;
    return o;
}

} // namespace

TEST_CASE("parallelism: rolling is one host at a time, parallel up to max_parallel") {
    CHECK(cli::parallelism(rolling(), 3) == 1);
    CHECK(cli::parallelism(parallel(), 3) == 3);
    CHECK(cli::parallelism(parallel(2), 3) == 2);
    CHECK(cli::parallelism(parallel(5), 3) == 3);
    CHECK(cli::parallelism(parallel(), 0) == 0);
}

TEST_CASE("decide_rollback: only hosts that switched, only when another failed") {
    cli::HostRun run;
    run.outcome = HostOutcome::live;
    run.previous = "v1";
    run.release = "v2";
    CHECK(cli::decide_rollback(run, false, true) == RollbackDecision::none);
    CHECK(cli::decide_rollback(run, true, true) == RollbackDecision::roll_back);
    CHECK(cli::decide_rollback(run, true, false) == RollbackDecision::keep_no_rollback);
    run.previous.clear();
    CHECK(cli::decide_rollback(run, true, true) == RollbackDecision::keep_first_deploy);
    run.previous = "v1";
    for (auto outcome : {HostOutcome::failed, HostOutcome::not_started, HostOutcome::unreachable,
                         HostOutcome::error, HostOutcome::queued}) {
        run.outcome = outcome;
        CHECK(cli::decide_rollback(run, true, true) == RollbackDecision::none);
    }
}

TEST_CASE("decide_rollback: a host that already served the tree switched nothing") {
    cli::HostRun run;
    run.outcome = HostOutcome::live;
    run.previous = "v1";
    run.release = "v1";
    run.unchanged = true;
    CHECK(cli::decide_rollback(run, true, true) == RollbackDecision::none);
    CHECK(cli::decide_rollback(run, true, false) == RollbackDecision::none);
}

TEST_CASE("run_fleet: a host that already serves the tree is skipped, and never rolled back") {
    FakeFleet fleet;
    fleet.serving = {h1};
    auto runs = fleet.run(2, parallel());
    CHECK(runs[0].outcome == HostOutcome::live);
    CHECK(runs[0].unchanged);
    CHECK(runs[1].outcome == HostOutcome::live);
    CHECK_FALSE(runs[1].unchanged);
    CHECK(cli::fleet_result(runs).ok());
    auto summary = cli::summarize(runs, parallel(), 100);
    CHECK(summary.rows[0].state == "PRODUCTION");
    CHECK(summary.rows[0].release == "v1");
    CHECK(summary.rows[0].note == "already served it: nothing to do");
    CHECK(summary.rows[1].release == "v2");
    CHECK(summary.rows[1].note.empty());

    SUBCASE("--no-follow: the skipped host is live, the other queued") {
        FakeFleet quick;
        quick.serving = {h1};
        auto options = parallel();
        options.follow = false;
        auto runs2 = quick.run(2, options);
        CHECK(runs2[0].outcome == HostOutcome::live);
        CHECK(runs2[1].outcome == HostOutcome::queued);
    }
    SUBCASE("another host fails: the skipped host is left alone") {
        FakeFleet failing;
        failing.serving = {h1};
        failing.failing = {h3};
        auto runs3 = failing.run(3, parallel());
        CHECK(failing.rolled_back == std::vector<std::string>{h2 + "->v1"});
        CHECK_FALSE(runs3[0].rolled_back);
        CHECK(runs3[0].rollback == RollbackDecision::none);
    }
}

TEST_CASE("run_fleet in parallel: every host at once, all live, nothing rolled back") {
    FakeFleet fleet;
    auto runs = fleet.run(3, parallel());
    REQUIRE(runs.size() == 3);
    CHECK(runs[0].host == h1);
    CHECK(runs[2].host == h3);
    for (const auto& r : runs)
        CHECK(r.outcome == HostOutcome::live);
    CHECK(fleet.max_running == 3);
    CHECK(fleet.rolled_back.empty());
    CHECK(cli::fleet_result(runs).ok());
    auto summary = cli::summarize(runs, parallel(), 100);
    CHECK(summary.ok);
    CHECK(summary.consistent);
    CHECK(summary.strategy == "parallel");
    CHECK(summary.rows[1].state == "PRODUCTION");
    CHECK(summary.rows[1].release == "v2");
}

TEST_CASE("run_fleet in parallel keeps to max_parallel") {
    FakeFleet fleet;
    auto runs = fleet.run(4, parallel(2));
    CHECK(fleet.max_running == 2);
    CHECK(fleet.started.size() == 4);
}

TEST_CASE("run_fleet rolling: each host starts after the previous one finished") {
    FakeFleet fleet;
    auto runs = fleet.run(3, rolling());
    CHECK(fleet.max_running == 1);
    CHECK(fleet.started == std::vector<std::string>{h1, h2, h3});
    CHECK(fleet.start_at[h2] >= fleet.end_at[h1]);
    CHECK(fleet.start_at[h3] >= fleet.end_at[h2]);
    CHECK(runs[1].started_ms >= runs[0].started_ms + runs[0].elapsed_ms);
}

TEST_CASE("run_fleet rolling, host 2 fails: host 3 never starts, host 1 is rolled back") {
    FakeFleet fleet;
    fleet.failing = {h2};
    auto runs = fleet.run(3, rolling());
    CHECK(fleet.started == std::vector<std::string>{h1, h2});
    CHECK(runs[0].outcome == HostOutcome::live);
    CHECK(runs[1].outcome == HostOutcome::failed);
    CHECK(runs[2].outcome == HostOutcome::not_started);
    CHECK(fleet.rolled_back == std::vector<std::string>{h1 + "->v1"});
    CHECK(runs[0].rolled_back);
    auto result = cli::fleet_result(runs);
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().kind == ErrorKind::failed);
    CHECK(result.error().message.find("1 of 3 hosts") != std::string::npos);
    auto summary = cli::summarize(runs, rolling(), 100);
    CHECK_FALSE(summary.ok);
    CHECK(summary.exit_code == 1);
    CHECK(summary.rows[0].state == "ROLLED_BACK");
    CHECK(summary.rows[0].previous == "v1");
    CHECK(summary.rows[1].state == "FAILED");
    CHECK(summary.rows[2].state == "NOT_STARTED");
    CHECK_FALSE(summary.rows[2].elapsed_ms);
}

TEST_CASE("run_fleet in parallel, one host unreachable: the others finish, then roll back") {
    FakeFleet fleet;
    fleet.unreachable = {h3};
    auto runs = fleet.run(3, parallel());
    CHECK(runs[0].outcome == HostOutcome::live);
    CHECK(runs[1].outcome == HostOutcome::live);
    CHECK(runs[2].outcome == HostOutcome::unreachable);
    CHECK(fleet.rolled_back.size() == 2);
    auto result = cli::fleet_result(runs);
    REQUIRE_FALSE(result.ok());
    CHECK(common::exit_code(result.error().kind) == 3);
    auto summary = cli::summarize(runs, parallel(), 100);
    CHECK(summary.rows[2].state == "UNREACHABLE");
    CHECK(summary.rows[0].state == "ROLLED_BACK");
}

TEST_CASE("run_fleet --canary: the hosts are CANARY; when one fails the others' canaries go") {
    FakeFleet fleet;
    fleet.canary = true;
    auto runs = fleet.run(3, parallel());
    auto summary = cli::summarize(runs, parallel(), 100);
    for (const auto& row : summary.rows)
        CHECK(row.state == "CANARY");
    CHECK(fleet.rolled_back.empty());
    std::ostringstream o, e;
    out::make_human_printer({}, o, e)->emit(summary);
    CHECK(o.str().find("3 of 3 hosts live with the canary (parallel") != std::string::npos);

    FakeFleet failing;
    failing.canary = true;
    failing.failing = {h3};
    runs = failing.run(3, parallel());
    std::sort(failing.rolled_back.begin(), failing.rolled_back.end());
    CHECK(failing.rolled_back == std::vector<std::string>{h1 + " abort v2", h2 + " abort v2"});
    summary = cli::summarize(runs, parallel(), 100);
    CHECK(summary.rows[0].state == "ROLLED_BACK");
    CHECK(summary.rows[0].note == "rolled back: canary v2 aborted, v1 still live");
    CHECK(summary.rows[2].state == "FAILED");
}

TEST_CASE("run_fleet: a failed deployment outranks an unreachable host in the exit code") {
    FakeFleet fleet;
    fleet.unreachable = {h1};
    fleet.failing = {h2};
    auto runs = fleet.run(3, parallel());
    CHECK(cli::fleet_result(runs).error().kind == ErrorKind::failed);
}

TEST_CASE("run_fleet with --no-rollback leaves the switched hosts live") {
    FakeFleet fleet;
    fleet.failing = {h2};
    auto options = parallel();
    options.rollback = false;
    auto runs = fleet.run(3, options);
    CHECK(fleet.rolled_back.empty());
    CHECK(runs[0].rollback == RollbackDecision::keep_no_rollback);
    auto summary = cli::summarize(runs, options, 100);
    CHECK(summary.rows[0].state == "PRODUCTION");
    CHECK(summary.rows[0].note == "kept: --no-rollback");
    CHECK_FALSE(summary.consistent);
    CHECK(cli::fleet_result(runs).error().kind == ErrorKind::failed);
}

TEST_CASE("run_fleet: a host on its first deploy has nothing to go back to and is kept") {
    FakeFleet fleet;
    fleet.failing = {h2};
    fleet.first_deploy = {h1};
    auto runs = fleet.run(3, parallel());
    CHECK(fleet.rolled_back == std::vector<std::string>{h3 + "->v1"});
    CHECK(runs[0].rollback == RollbackDecision::keep_first_deploy);
    auto summary = cli::summarize(runs, parallel(), 100);
    CHECK(summary.rows[0].state == "PRODUCTION");
    CHECK(summary.rows[0].note.find("first deploy") != std::string::npos);
}

TEST_CASE("run_fleet: a failed rollback is reported and fails the deploy") {
    FakeFleet fleet;
    fleet.unreachable = {h2};
    fleet.rollback_fails = {h1};
    auto runs = fleet.run(2, parallel());
    REQUIRE(runs[0].rollback_error);
    CHECK(runs[0].rollback_error->message.find("v2 is still live") != std::string::npos);
    CHECK(cli::fleet_result(runs).error().kind == ErrorKind::failed);
    CHECK(cli::summarize(runs, parallel(), 1).rows[0].state == "ROLLBACK_FAILED");
}

TEST_CASE("GroupedOutput: one host's lines stay together") {
    std::ostringstream o, e;
    out::HumanStyle style;
    style.show_host = true;
    auto printer = out::make_human_printer(style, o, e);
    {
        out::GroupedOutput grouped(*printer, out::GroupedOutput::Mode::grouped, nullptr);
        auto a = grouped.for_host("a");
        auto b = grouped.for_host("b");
        auto c = grouped.for_host("c");
        a->emit(out::Created{"a", "v1", "QUEUED"});
        b->emit(out::Created{"b", "v1", "QUEUED"});
        c->emit(out::Created{"c", "v1", "QUEUED"});
        b->emit(out::Created{"b", "v2", "QUEUED"});
        a->emit(out::Created{"a", "v2", "QUEUED"});
        grouped.finish("b"); // a is live: b waits
        c->emit(out::Created{"c", "v2", "QUEUED"});
        grouped.finish("a"); // b's block, then c goes live
        c->emit(out::Created{"c", "v3", "QUEUED"});
        grouped.finish("c");
    }
    CHECK(o.str() == "[a] ==> Release v1: QUEUED\n[a] ==> Release v2: QUEUED\n"
                     "[b] ==> Release v1: QUEUED\n[b] ==> Release v2: QUEUED\n"
                     "[c] ==> Release v1: QUEUED\n[c] ==> Release v2: QUEUED\n"
                     "[c] ==> Release v3: QUEUED\n");
}

TEST_CASE("GroupedOutput: an agent event of the wrong shape moves no phase and throws nothing") {
    std::ostringstream o, e, term;
    auto printer = out::make_human_printer({}, o, e);
    out::GroupedOutput grouped(*printer, out::GroupedOutput::Mode::grouped, &term);
    auto a = grouped.for_host("http://127.0.0.1:1");
    a->emit(out::Created{"http://127.0.0.1:1", "v2", "QUEUED"});
    CHECK(term.str().ends_with("127.0.0.1:1 v2 QUEUED"));
    for (const auto& odd : {json("not an object"), json::array({1, 2}),
                            json{{"event", "state"}, {"release", 5}, {"state", nullptr}},
                            json{{"event", 7}}})
        CHECK_NOTHROW(a->emit(out::AgentEvent{"http://127.0.0.1:1", odd}));
    // Redrawn around each event, with the same phase: no empty release or state in it.
    CHECK(term.str().ends_with("127.0.0.1:1 v2 QUEUED"));
    CHECK(term.str().find("127.0.0.1:1  ") == std::string::npos);
    grouped.finish("http://127.0.0.1:1");
    grouped.flush_all();
    CHECK(o.str().find("Release v2: QUEUED") != std::string::npos);
}

TEST_CASE("GroupedOutput: the phase line is drawn and cleared on the terminal only") {
    std::ostringstream o, e, term;
    auto printer = out::make_human_printer({}, o, e);
    out::GroupedOutput grouped(*printer, out::GroupedOutput::Mode::grouped, &term);
    grouped.for_host("http://127.0.0.1:1");
    grouped.set_phase("http://127.0.0.1:1", "v2 BUILDING");
    CHECK(term.str().find("127.0.0.1:1 v2 BUILDING") != std::string::npos);
    grouped.flush_all();
    CHECK(term.str().ends_with("\r\033[K"));
    CHECK(o.str().find('\r') == std::string::npos);
}

TEST_CASE("compare_hosts: the hosts differ when their PRODUCTION releases do") {
    std::vector<cli::HostView> same{{"a", "v2", "", std::nullopt}, {"b", "v2", "", std::nullopt}};
    auto s = cli::compare_hosts("status", same);
    CHECK(s.consistent);
    CHECK(s.ok);
    CHECK(s.rows[0].state == "PRODUCTION");
    std::vector<cli::HostView> differ{{"a", "v2", "", std::nullopt},
                                      {"b", "v1", "", std::nullopt},
                                      {"c", "", "", common::Error{ErrorKind::connection, "down"}}};
    s = cli::compare_hosts("status", differ);
    CHECK_FALSE(s.consistent);
    CHECK_FALSE(s.ok);
    CHECK(s.exit_code == 3);
    CHECK(s.rows[2].state == "UNREACHABLE");
}

TEST_CASE("summary_event carries every host") {
    out::Summary s;
    s.command = "deploy";
    s.strategy = "rolling";
    s.ok = false;
    s.exit_code = 1;
    s.rows.push_back({"h1", "v2", "ROLLED_BACK", "v1", 1200, "rolled back: v1 is live again"});
    s.rows.push_back({"h2", "v2", "FAILED", "v1", 800, "v2 failed"});
    auto e = out::summary_event(s);
    CHECK(e["event"] == "summary");
    CHECK(e["strategy"] == "rolling");
    CHECK(e["exit_code"] == 1);
    CHECK(e["hosts"].size() == 2);
    CHECK(e["hosts"][0]["state"] == "ROLLED_BACK");
    CHECK(e["hosts"][0]["previous"] == "v1");
    CHECK(e["hosts"][1]["elapsed_ms"] == 800);
}

TEST_CASE("fleet_release_id: the highest next free id of the hosts") {
    CHECK(cli::fleet_release_id({"v3", "v16", "v1"}) == "v16");
    CHECK(cli::fleet_release_id({"v9", "v10"}) == "v10"); // by number, not by text
    CHECK(cli::fleet_release_id({"v1"}) == "v1");
    CHECK(cli::fleet_release_id({"", "x2", "v2"}) == "v2");
    CHECK(cli::fleet_release_id({}).empty());
}

namespace {

// One host's side of FleetReleaseId::create: its next free id, moved by other deploys.
struct FakeIds {
    std::int64_t next = 1;
    std::vector<std::string> created = {};
    common::Result<json> create(const std::string& id) {
        auto number = *common::release_number(id);
        if (number < next)
            return common::make_error(ErrorKind::refused, id + " is taken");
        next = number + 1;
        created.push_back(id);
        return json{{"release", id}};
    }
    cli::FleetReleaseId::Create creator() {
        return [this](const std::string& id) { return create(id); };
    }
    cli::FleetReleaseId::AskNext asker() {
        return [this]() -> common::Result<std::string> { return "v" + std::to_string(next); };
    }
};

class NullPrinter final : public out::Printer {
  public:
    void emit(const out::Event& event) override {
        if (std::holds_alternative<out::Warning>(event))
            warnings.push_back(std::get<out::Warning>(event).message);
    }
    std::vector<std::string> warnings;
};

} // namespace

TEST_CASE("FleetReleaseId: every host gets the same id") {
    FakeIds a{3}, b{1};
    NullPrinter printer;
    cli::FleetReleaseId id(cli::fleet_release_id({"v3", "v1"}));
    CHECK(id.create("a", a.creator(), a.asker(), printer));
    CHECK(id.create("b", b.creator(), b.asker(), printer));
    CHECK(a.created == std::vector<std::string>{"v3"});
    CHECK(b.created == std::vector<std::string>{"v3"});
    CHECK(printer.warnings.empty());
}

TEST_CASE("FleetReleaseId: a host whose id was taken meanwhile moves it, before any creation") {
    FakeIds a{3}, b{1};
    NullPrinter printer;
    cli::FleetReleaseId id("v3");
    a.next = 5; // another deploy took v3 and v4 on a after the fleet asked
    auto created = id.create("a", a.creator(), a.asker(), printer);
    REQUIRE(created);
    CHECK(id.id() == "v5");
    CHECK(id.create("b", b.creator(), b.asker(), printer));
    CHECK(a.created == std::vector<std::string>{"v5"});
    CHECK(b.created == std::vector<std::string>{"v5"});
    REQUIRE(printer.warnings.size() == 1);
    CHECK(printer.warnings[0].find("every host gets v5") != std::string::npos);
}

TEST_CASE("FleetReleaseId: once a host has the id, a race on another fails that host") {
    FakeIds a{3}, b{3};
    NullPrinter printer;
    cli::FleetReleaseId id("v3");
    REQUIRE(id.create("a", a.creator(), a.asker(), printer));
    b.next = 4; // taken on b meanwhile
    auto refused = id.create("b", b.creator(), b.asker(), printer);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().kind == ErrorKind::refused);
    CHECK(refused.error().message.find("v3 was taken on b") != std::string::npos);
    CHECK(refused.error().message.find("1 host already has v3") != std::string::npos);
    CHECK(b.created.empty());
    CHECK(id.id() == "v3");
}

TEST_CASE("FleetReleaseId: another refusal is passed on as it is, and the id stays") {
    NullPrinter printer;
    cli::FleetReleaseId id("v3");
    int asked = 0;
    auto refused = id.create(
        "a",
        [](const std::string&) -> common::Result<json> {
            return common::make_error(ErrorKind::refused, "the app is stopped");
        },
        [&]() -> common::Result<std::string> {
            ++asked;
            return std::string("v3"); // the id is still free: not a race
        },
        printer);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message == "the app is stopped");
    CHECK(asked == 1);
    CHECK(id.id() == "v3");
}

namespace {

json release_json(const std::string& id, const std::string& state, const std::string& commit,
                  const std::string& tree, bool dirty = false) {
    return {{"id", id},       {"state", state},      {"commit", commit},
            {"dirty", dirty}, {"tree_digest", tree}, {"config_digest", "cfg"}};
}

cli::HostView serving(const std::string& host, const json& release) {
    return cli::host_view(host, release, "");
}

} // namespace

TEST_CASE("compare_hosts: hosts are in sync when they serve the same content, whatever the ids") {
    auto s =
        cli::compare_hosts("status", {serving("a", release_json("v15", "PRODUCTION", "c3", "t3")),
                                      serving("b", release_json("v1", "PRODUCTION", "c3", "t3"))});
    CHECK(s.consistent);
    CHECK(s.rows[1].differs.empty());
    CHECK(s.rows[0].commit == "c3");

    s = cli::compare_hosts("status",
                           {serving("a", release_json("v3", "PRODUCTION", "c3", "t3")),
                            serving("b", release_json("v3", "PRODUCTION", "c3", "t9", true)),
                            serving("c", release_json("v2", "PRODUCTION", "c2", "t2")),
                            serving("d", nullptr)});
    CHECK_FALSE(s.consistent);
    CHECK(s.rows[1].differs == std::vector<std::string>{"tree"});
    CHECK(s.rows[1].dirty);
    CHECK(s.rows[2].differs == std::vector<std::string>{"commit", "tree"});
    CHECK(s.rows[3].differs == std::vector<std::string>{"release"});
    CHECK(s.rows[3].state == "NONE");

    // Releases made before agents recorded digests: compared by id and commit.
    auto old = [](const std::string& id) {
        return json{{"id", id}, {"state", "PRODUCTION"}, {"commit", "c1"}};
    };
    CHECK(cli::compare_hosts("status", {serving("a", old("v2")), serving("b", old("v2"))})
              .consistent);
    s = cli::compare_hosts("status", {serving("a", old("v2")), serving("b", old("v3"))});
    CHECK_FALSE(s.consistent);
    CHECK(s.rows[1].differs == std::vector<std::string>{"unknown"});
}

namespace {

cli::RollbackView rollback_view(const std::string& host, const std::string& production,
                                const std::string& previous, const json& releases) {
    cli::RollbackView view;
    view.host = host;
    view.status =
        out::JsonValue(json{{"production", production.empty() ? json() : json(production)},
                            {"previous", previous.empty() ? json() : json(previous)},
                            {"releases", releases}});
    return view;
}

} // namespace

TEST_CASE("plan_fleet_rollback: every host must have the release before anything switches") {
    auto a = rollback_view("a", "v3", "v2",
                           json::array({release_json("v3", "PRODUCTION", "c3", "t3"),
                                        release_json("v2", "INACTIVE", "c2", "t2")}));
    auto b = rollback_view("b", "v3", "v1",
                           json::array({release_json("v3", "PRODUCTION", "c3", "t3"),
                                        release_json("v1", "INACTIVE", "c1", "t1")}));
    SUBCASE("one host lacks it: not_found, naming it") {
        auto plan = cli::plan_fleet_rollback({a, b}, "v2");
        REQUIRE_FALSE(plan);
        CHECK(plan.error().kind == ErrorKind::not_found);
        CHECK(plan.error().message.find("nothing switched: b has no release v2") !=
              std::string::npos);
    }
    SUBCASE("one host has it FAILED: refused") {
        auto c = rollback_view("c", "v3", "",
                               json::array({release_json("v3", "PRODUCTION", "c3", "t3"),
                                            release_json("v2", "FAILED", "c2", "t2")}));
        auto plan = cli::plan_fleet_rollback({a, c}, "v2");
        REQUIRE_FALSE(plan);
        CHECK(plan.error().kind == ErrorKind::refused);
        CHECK(plan.error().message.find("v2 is FAILED on c") != std::string::npos);
    }
    SUBCASE("a host already serves it: nothing to do there") {
        auto plan = cli::plan_fleet_rollback({a, b}, "v3");
        REQUIRE(plan);
        CHECK((*plan)[0].unchanged);
        CHECK((*plan)[1].unchanged);
    }
    SUBCASE("a host that cannot answer: nothing switches") {
        cli::RollbackView down;
        down.host = "d";
        down.error = common::Error{ErrorKind::connection, "refused"};
        auto plan = cli::plan_fleet_rollback({a, down}, "v2");
        REQUIRE_FALSE(plan);
        CHECK(plan.error().kind == ErrorKind::connection);
        CHECK(plan.error().message.find("nothing switched: d:") != std::string::npos);
    }
    SUBCASE("no id: the hosts' previous releases differ: refused, naming each") {
        auto plan = cli::plan_fleet_rollback({a, b}, "");
        REQUIRE_FALSE(plan);
        CHECK(plan.error().kind == ErrorKind::refused);
        CHECK(plan.error().message.find("a to v2 (c2) and b to v1 (c1)") != std::string::npos);
    }
    SUBCASE("no id: the same release under other ids goes ahead") {
        auto c = rollback_view("c", "v9", "v8",
                               json::array({release_json("v9", "PRODUCTION", "c3", "t3"),
                                            release_json("v8", "INACTIVE", "c2", "t2")}));
        auto plan = cli::plan_fleet_rollback({a, c}, "");
        REQUIRE(plan);
        CHECK((*plan)[0].target == "v2");
        CHECK((*plan)[0].production == "v3");
        CHECK((*plan)[1].target == "v8");
        CHECK_FALSE((*plan)[1].unchanged);
    }
    SUBCASE("no id: a host with nothing to go back to") {
        auto c = rollback_view("c", "v3", "",
                               json::array({release_json("v3", "PRODUCTION", "c3", "t3")}));
        auto plan = cli::plan_fleet_rollback({a, c}, "");
        REQUIRE_FALSE(plan);
        CHECK(plan.error().message.find("c has no earlier release") != std::string::npos);
    }
}

TEST_CASE("run_fleet with a release command: the first host alone, then the rest without it") {
    FakeFleet fleet;
    auto options = parallel();
    options.release_first = true;
    auto runs = fleet.run(3, options);
    for (const auto& r : runs)
        CHECK(r.outcome == HostOutcome::live);
    CHECK(fleet.started.front() == h1);
    CHECK(fleet.start_at[h2] >= fleet.end_at[h1]);
    CHECK(fleet.start_at[h3] >= fleet.end_at[h1]);
    CHECK(fleet.max_running == 2); // h2 and h3 together, after h1
    CHECK(fleet.release_command == std::map<std::string, bool>{{h1, true}, {h2, false}, {h3, false}});
    CHECK(cli::fleet_result(runs).ok());
}

TEST_CASE("run_fleet with a release command: the first host fails, no other starts") {
    FakeFleet fleet;
    fleet.failing = {h1};
    auto options = parallel();
    options.release_first = true;
    auto runs = fleet.run(3, options);
    CHECK(fleet.started == std::vector<std::string>{h1});
    CHECK(runs[0].outcome == HostOutcome::failed);
    CHECK(runs[1].outcome == HostOutcome::not_started);
    CHECK(runs[2].outcome == HostOutcome::not_started);
    CHECK(fleet.rolled_back.empty());
    auto summary = cli::summarize(runs, options, 100);
    CHECK(summary.exit_code == 1);
    CHECK(summary.rows[1].state == "NOT_STARTED");
}

TEST_CASE("run_fleet with a release command, rolling: one at a time, only the first runs it") {
    FakeFleet fleet;
    auto options = rolling();
    options.release_first = true;
    auto runs = fleet.run(3, options);
    CHECK(fleet.started == std::vector<std::string>{h1, h2, h3});
    CHECK(fleet.max_running == 1);
    CHECK(fleet.release_command == std::map<std::string, bool>{{h1, true}, {h2, false}, {h3, false}});
}

TEST_CASE("run_fleet with a release command and one host: it runs there") {
    FakeFleet fleet;
    auto options = parallel();
    options.release_first = true;
    auto runs = fleet.run(1, options);
    CHECK(runs[0].outcome == HostOutcome::live);
    CHECK(fleet.release_command == std::map<std::string, bool>{{h1, true}});
}
