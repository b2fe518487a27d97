// agent/store/store.hpp: the SQLite state database.
#include <agent/store/store.hpp>

#include <doctest/doctest.h>

#include <algorithm>

#include "temp_dir.hpp"

using agent::Store;
using common::ErrorKind;
using common::State;

namespace {

std::unique_ptr<Store> open_store(const test::TempDir& dir) {
    auto store = Store::open(dir.path() / "state.db");
    REQUIRE(store.ok());
    return std::move(*store);
}

std::string create(Store& store, const std::string& app) {
    auto row = store.create({app, "app = \"" + app + "\"\n", "abc123", "msg", false, {}, {}});
    REQUIRE(row.ok());
    return row->id;
}

// Walks a new release of `app` to PROVISIONING.
std::string provisioning(Store& store, const std::string& app) {
    auto id = create(store, app);
    REQUIRE(store.transition(app, id, State::queued, State::building, "t").ok());
    REQUIRE(store.transition(app, id, State::building, State::provisioning, "t").ok());
    return id;
}

} // namespace

TEST_CASE("store gives release ids v1, v2, ... per app") {
    test::TempDir dir;
    auto store = open_store(dir);
    CHECK(create(*store, "web") == "v1");
    CHECK(create(*store, "web") == "v2");
    CHECK(create(*store, "api") == "v1");
    CHECK(create(*store, "web") == "v3");
    auto rows = store->releases("web");
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].id == "v3"); // newest first
    CHECK(rows[0].state == State::queued);
    CHECK(rows[0].commit == "abc123");
    CHECK(store->apps() == std::vector<std::string>{"api", "web"});
}

TEST_CASE("store does not reuse ids after a release is removed") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto id = create(*store, "web");
    REQUIRE(store->transition("web", id, State::queued, State::failed, "t", "boom").ok());
    REQUIRE(store->remove("web", id, "test").ok());
    CHECK(create(*store, "web") == "v2");
}

TEST_CASE("store gives a requested id at or above the app's next one, and follows it") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto with_id = [&](const std::string& app, std::int64_t seq) {
        agent::NewRelease release{app, "app = \"" + app + "\"\n", "abc", "m", false, {}, {}};
        release.seq = seq;
        return store->create(release);
    };
    auto first = with_id("web", 16); // a new app may start anywhere
    REQUIRE(first);
    CHECK(first->id == "v16");
    CHECK(store->next_seq("web") == 17);
    CHECK(create(*store, "web") == "v17"); // its own numbering follows
    auto taken = with_id("web", 17);
    REQUIRE_FALSE(taken);
    CHECK(taken.error().kind == ErrorKind::refused);
    CHECK(taken.error().message.find("the next free one is v18") != std::string::npos);
    // Below the next one but never used: refused too, ids only grow.
    CHECK_FALSE(with_id("web", 3));
    CHECK(store->releases("web").size() == 2);
    auto next = with_id("web", 18);
    REQUIRE(next);
    CHECK(next->id == "v18");
    CHECK(store->next_seq("api") == std::nullopt);
}

TEST_CASE("store transition is a compare-and-set on the current state") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto id = create(*store, "web");
    SUBCASE("wrong current state") {
        auto moved = store->transition("web", id, State::building, State::provisioning, "t");
        REQUIRE_FALSE(moved.ok());
        CHECK(moved.error().kind == ErrorKind::refused);
        CHECK(store->get("web", id)->state == State::queued);
    }
    SUBCASE("forbidden transition") {
        auto moved = store->transition("web", id, State::queued, State::production, "t");
        REQUIRE_FALSE(moved.ok());
        CHECK(moved.error().kind == ErrorKind::refused);
        CHECK(store->get("web", id)->state == State::queued);
    }
    SUBCASE("allowed transition records the error and an audit row") {
        REQUIRE(store->transition("web", id, State::queued, State::failed, "t", "boom").ok());
        CHECK(store->get("web", id)->state == State::failed);
        CHECK(store->get("web", id)->error == "boom");
        auto audit = store->audit("web");
        REQUIRE(audit.size() == 2);
        CHECK(audit[1].from == "QUEUED");
        CHECK(audit[1].to == "FAILED");
        CHECK(audit[1].detail == "boom");
    }
}

TEST_CASE("store refuses a second PRODUCTION release even with raw SQL") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto v1 = provisioning(*store, "web");
    auto v2 = provisioning(*store, "web");
    auto other = provisioning(*store, "api");
    REQUIRE(store->switch_production("web", v1, State::provisioning).ok());
    auto raw =
        store->exec("UPDATE releases SET state = 'PRODUCTION' WHERE app = 'web' AND id = 'v2'");
    CHECK_FALSE(raw.ok());
    CHECK(store->get("web", v2)->state == State::provisioning);
    // Another app has its own PRODUCTION.
    CHECK(store->switch_production("api", other, State::provisioning).ok());
    CHECK(store->production("web")->id == v1);
    CHECK(store->production("api")->id == other);
}

TEST_CASE("store switch moves the old PRODUCTION to INACTIVE in one transaction") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto v1 = provisioning(*store, "web");
    auto first = store->switch_production("web", v1, State::provisioning);
    REQUIRE(first.ok());
    CHECK_FALSE(first->has_value());
    auto v2 = provisioning(*store, "web");
    auto second = store->switch_production("web", v2, State::provisioning);
    REQUIRE(second.ok());
    CHECK(**second == v1);
    CHECK(store->get("web", v1)->state == State::inactive);
    CHECK(store->get("web", v2)->state == State::production);
    SUBCASE("rollback promotes the INACTIVE release back") {
        auto back = store->switch_production("web", v1, State::inactive);
        REQUIRE(back.ok());
        CHECK(**back == v2);
        CHECK(store->production("web")->id == v1);
        const auto history = store->switches("web");
        REQUIRE(history.size() == 3);
        CHECK(history[0].release == v1);
        CHECK(history[0].previous.empty());
        CHECK(history[0].reason == "deploy");
        CHECK(history[1].release == v2);
        CHECK(history[1].previous == v1);
        CHECK(history[2].release == v1);
        CHECK(history[2].previous == v2);
        CHECK(history[2].reason == "rollback");
        CHECK_FALSE(history[2].ts.empty());
    }
    SUBCASE("a failed switch changes nothing") {
        auto v3 = create(*store, "web"); // QUEUED: cannot become PRODUCTION
        auto bad = store->switch_production("web", v3, State::queued);
        REQUIRE_FALSE(bad.ok());
        CHECK(store->production("web")->id == v2);
        CHECK(store->get("web", v3)->state == State::queued);
        CHECK(store->get("web", v1)->state == State::inactive);
        CHECK(store->switches("web").size() == 2); // no switch recorded
    }
    SUBCASE("a switch from the wrong state rolls back the demotion") {
        auto bad = store->switch_production("web", v1, State::provisioning);
        REQUIRE_FALSE(bad.ok());
        CHECK(store->production("web")->id == v2);
        CHECK(store->get("web", v1)->state == State::inactive);
    }
}

TEST_CASE("store keeps releases and process info across reopen") {
    test::TempDir dir;
    {
        auto store = open_store(dir);
        auto id = provisioning(*store, "web");
        REQUIRE(store->set_process("web", id, 41234, 999, 12345).ok());
        REQUIRE(store->switch_production("web", id, State::provisioning).ok());
    }
    auto store = open_store(dir);
    auto row = store->get("web", "v1");
    REQUIRE(row.ok());
    CHECK(row->state == State::production);
    CHECK(row->port == 41234);
    CHECK(row->pid == 999);
    CHECK(row->pid_start == 12345);
    CHECK(row->config == "app = \"web\"\n");
    CHECK(create(*store, "web") == "v2");
    REQUIRE(store->clear_process("web", "v1").ok());
    CHECK(store->get("web", "v1")->pid == 0);
}

TEST_CASE("store get and remove report unknown releases as not_found") {
    test::TempDir dir;
    auto store = open_store(dir);
    CHECK(store->get("web", "v9").error().kind == ErrorKind::not_found);
    CHECK(store->remove("web", "v9", "t").error().kind == ErrorKind::not_found);
    CHECK_FALSE(store->production("web").has_value());
}

TEST_CASE("store switch writes an audit row for each release it moves") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto v1 = provisioning(*store, "web");
    auto v2 = provisioning(*store, "web");
    REQUIRE(store->switch_production("web", v1, State::provisioning).ok());
    REQUIRE(store->switch_production("web", v2, State::provisioning).ok());
    std::vector<std::string> switches;
    for (const auto& row : store->audit("web"))
        if (row.to == "PRODUCTION" || row.to == "INACTIVE")
            switches.push_back(row.release + " " + row.from + "->" + row.to + " " + row.detail);
    CHECK(switches == std::vector<std::string>{
                          "v1 PROVISIONING->PRODUCTION first production release",
                          "v1 PRODUCTION->INACTIVE replaced by v2",
                          "v2 PROVISIONING->PRODUCTION replaces v1",
                      });
}

TEST_CASE("store keeps an app stopped and records stop and start") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto id = provisioning(*store, "web");
    REQUIRE(store->switch_production("web", id, State::provisioning).ok());
    CHECK_FALSE(store->stopped("web"));
    REQUIRE(store->set_stopped("web", true, "stopped on request").ok());
    CHECK(store->stopped("web"));
    REQUIRE(store->set_stopped("web", false, "started on request").ok());
    CHECK_FALSE(store->stopped("web"));
    auto audit = store->audit("web");
    REQUIRE(audit.size() >= 2);
    CHECK(audit[audit.size() - 2].detail == "stopped on request");
    CHECK(audit.back().detail == "started on request");
    CHECK(audit.back().release == id);
    CHECK(store->set_stopped("nope", true, "x").error().kind == ErrorKind::not_found);
}

TEST_CASE("store destroy_app removes every row of the app, and only of it") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto web = provisioning(*store, "web");
    REQUIRE(store->switch_production("web", web, State::provisioning).ok());
    create(*store, "web");
    auto api = provisioning(*store, "api");
    REQUIRE(store->switch_production("api", api, State::provisioning).ok());
    REQUIRE(store->put_env("web", {{"MODE", false, "x", {}}}, std::string("wrapped")).ok());
    REQUIRE(store->put_env("api", {{"MODE", false, "y", {}}}, std::string("wrapped2")).ok());
    REQUIRE(store->set_stopped("web", true, "stopped").ok());

    REQUIRE(store->destroy_app("web", "app destroyed on request (2 releases)").ok());
    CHECK(store->releases("web").empty());
    CHECK(store->env("web").empty());
    CHECK_FALSE(store->data_key("web"));
    CHECK(store->switches("web").empty());
    CHECK_FALSE(store->stopped("web"));
    CHECK(store->audit("web").back().detail == "app destroyed on request (2 releases)");
    // The other app is untouched.
    CHECK(store->releases("api").size() == 1);
    CHECK(store->env("api").size() == 1);
    CHECK(store->data_key("api"));
    CHECK(store->switches("api").size() == 1);
    // Its counter went with it: the next release is v1 again.
    CHECK(create(*store, "web") == "v1");
}

TEST_CASE("store claims each cron due minute once per app and job, across releases") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto claim = [&](const std::string& app, const std::string& job, const std::string& due) {
        auto claimed = store->claim_cron_due(app, job, due);
        REQUIRE(claimed.ok());
        return *claimed;
    };
    CHECK(claim("hello", "tick", "2026-01-01T10:00:00Z"));
    CHECK_FALSE(claim("hello", "tick", "2026-01-01T10:00:00Z")); // a second run of that minute
    CHECK_FALSE(claim("hello", "tick", "2026-01-01T09:59:00Z")); // an earlier one
    CHECK(claim("hello", "other", "2026-01-01T10:00:00Z"));      // another job
    CHECK(claim("world", "tick", "2026-01-01T10:00:00Z"));       // another app
    CHECK(claim("hello", "tick", "2026-01-01T10:01:00Z"));

    agent::CronRunRow run;
    run.started = "2026-01-01T10:01:00Z";
    run.finished = "2026-01-01T10:01:02Z";
    run.exit_status = 3;
    run.duration_ms = 2000;
    run.outcome = "failed";
    run.release = "v2";
    REQUIRE(store->record_cron_run("hello", "tick", run).ok());
    const auto jobs = store->cron_jobs("hello");
    REQUIRE(jobs.size() == 2);
    CHECK(jobs[0].job == "other");
    CHECK(jobs[0].outcome.empty());
    CHECK(jobs[1].job == "tick");
    CHECK(jobs[1].last_due == "2026-01-01T10:01:00Z"); // a recorded run keeps the claim
    CHECK(jobs[1].exit_status == 3);
    CHECK(jobs[1].duration_ms == 2000);
    CHECK(jobs[1].outcome == "failed");
    CHECK(jobs[1].release == "v2");

    // The process of a run going on, for the agent to end after a crash.
    CHECK(store->cron_processes().empty());
    REQUIRE(store->set_cron_process("hello", "tick", 4242, 99).ok());
    REQUIRE(store->set_cron_process("world", "new-job", 4343, 7).ok()); // no row before
    auto processes = store->cron_processes();
    REQUIRE(processes.size() == 2);
    CHECK(processes[0].app == "hello");
    CHECK(processes[0].job == "tick");
    CHECK(processes[0].pid == 4242);
    CHECK(processes[0].pid_start == 99);
    CHECK(processes[1].job == "new-job");
    REQUIRE(store->set_cron_process("world", "new-job", 0, 0).ok());
    CHECK(store->cron_processes().size() == 1);
    CHECK(store->cron_jobs("hello")[1].outcome == "failed"); // the run's record is kept

    // Releases keep whether they run the jobs here (a fleet deploy's "cron": false).
    agent::NewRelease other_host{"hello", "app = \"hello\"\n", "abc", "m", false, {}, {}};
    other_host.cron = false;
    auto row = store->create(other_host);
    REQUIRE(row.ok());
    CHECK_FALSE(store->get("hello", row->id)->cron);
    CHECK(store->get("hello", create(*store, "hello"))->cron);

    // destroy forgets them.
    REQUIRE(store->destroy_app("hello", "destroyed").ok());
    CHECK(store->cron_jobs("hello").empty());
    CHECK(store->cron_jobs("world").size() == 2);
    CHECK(claim("hello", "tick", "2026-01-01T10:00:00Z"));
}

TEST_CASE("store keeps a release's processes other than web, and its web's start and restarts") {
    test::TempDir dir;
    auto store = open_store(dir);
    const auto v1 = create(*store, "web");
    const auto v2 = create(*store, "web");

    agent::ProcessRow worker;
    worker.app = "web";
    worker.release = v1;
    worker.process = "worker";
    worker.instance = 1;
    worker.pid = 4242;
    worker.pid_start = 77;
    worker.started_at = "2026-12-03T10:00:00.000Z";
    REQUIRE(store->put_process(worker).ok());
    agent::ProcessRow clock = worker;
    clock.process = "clock";
    clock.pid = 4343;
    REQUIRE(store->put_process(clock).ok());
    agent::ProcessRow other = worker;
    other.release = v2;
    REQUIRE(store->put_process(other).ok());

    auto rows = store->processes("web", v1);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].process == "clock"); // by name
    CHECK(rows[1].pid == 4242);
    CHECK(rows[1].pid_start == 77);
    CHECK(rows[1].started_at == "2026-12-03T10:00:00.000Z");
    CHECK(store->all_processes().size() == 3);

    // Put again: replaced, not added.
    worker.pid = 5000;
    worker.restarts = 2;
    worker.last_exit = "exited with signal 9";
    REQUIRE(store->put_process(worker).ok());
    rows = store->processes("web", v1);
    REQUIRE(rows.size() == 2);
    CHECK(rows[1].pid == 5000);
    CHECK(rows[1].restarts == 2);
    CHECK(rows[1].last_exit == "exited with signal 9");

    REQUIRE(store->remove_process("web", v1, "clock", 1).ok());
    CHECK(store->processes("web", v1).size() == 1);
    // Removing the release removes its processes.
    REQUIRE(store->remove("web", v1, "test").ok());
    CHECK(store->processes("web", v1).empty());
    CHECK(store->all_processes().size() == 1);

    // The web process: started_at follows a new process, restarts and last_exit add up.
    REQUIRE(store->set_process("web", v2, 4000, 100, 1).ok());
    auto first = store->get("web", v2);
    REQUIRE(first.ok());
    CHECK_FALSE(first->started_at.empty());
    REQUIRE(store->set_process("web", v2, 4000, 100, 1).ok()); // the same one again
    CHECK(store->get("web", v2)->started_at == first->started_at);
    REQUIRE(store->clear_process("web", v2).ok());
    REQUIRE(store->set_process("web", v2, 4000, 0, 0).ok());
    CHECK(store->get("web", v2)->started_at.empty());
    REQUIRE(store->count_restart("web", v2).ok());
    REQUIRE(store->count_restart("web", v2).ok());
    REQUIRE(store->set_last_exit("web", v2, "exited with status 3").ok());
    CHECK(store->get("web", v2)->restarts == 2);
    CHECK(store->get("web", v2)->last_exit == "exited with status 3");

    // A web instance past the first keeps its port.
    agent::ProcessRow web2 = other;
    web2.process = "web";
    web2.instance = 2;
    web2.port = 41234;
    REQUIRE(store->put_process(web2).ok());
    rows = store->processes("web", v2);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].process == "web");
    CHECK(rows[0].port == 41234);
    CHECK(rows[1].port == 0);

    // destroy forgets every row of the app.
    REQUIRE(store->destroy_app("web", "test").ok());
    CHECK(store->all_processes().empty());
}

TEST_CASE("store keeps an app's instance counts, audited, until the app is destroyed") {
    test::TempDir dir;
    auto store = open_store(dir);
    const auto v1 = create(*store, "web");
    create(*store, "other");
    CHECK(store->scale("web").empty()); // nothing set: one of each
    REQUIRE(store->set_scale("web", {{"web", 3}, {"worker", 2}}, "scaled: web=3 worker=2").ok());
    REQUIRE(store->set_scale("web", {{"web", 0}}, "scaled: web=0").ok()); // worker keeps 2
    const std::map<std::string, int> expected{{"web", 0}, {"worker", 2}};
    CHECK(store->scale("web") == expected);
    CHECK(store->scale("other").empty());
    auto audit = store->audit("web");
    auto scaled = std::find_if(audit.begin(), audit.end(), [](const agent::AuditRow& row) {
        return row.detail == "scaled: web=0";
    });
    REQUIRE(scaled != audit.end());
    CHECK(scaled->release.empty()); // no PRODUCTION release yet
    (void)v1;
    REQUIRE(store->destroy_app("web", "test").ok());
    CHECK(store->scale("web").empty());
}

TEST_CASE("store traffic: maintenance and pause are kept per app, audited, removed with it") {
    test::TempDir dir;
    auto store = open_store(dir);
    auto id = provisioning(*store, "web");
    REQUIRE(store->switch_production("web", id, State::provisioning).ok());
    auto none = store->traffic("web");
    CHECK_FALSE(none.maintenance);
    CHECK_FALSE(none.paused);

    REQUIRE(store->set_maintenance("web", true, "Back soon", 300, "maintenance on").ok());
    auto on = store->traffic("web");
    CHECK(on.maintenance);
    CHECK(on.message == "Back soon");
    CHECK(on.retry_after == 300);
    CHECK_FALSE(on.maintenance_since.empty());
    CHECK_FALSE(on.paused);
    // Turned on again (a new message): the time it started stays.
    REQUIRE(store->set_maintenance("web", true, "Later", 0, "maintenance on").ok());
    CHECK(store->traffic("web").maintenance_since == on.maintenance_since);
    CHECK(store->traffic("web").message == "Later");

    REQUIRE(store->set_paused("web", true, 5000, "paused").ok());
    auto both = store->traffic("web");
    CHECK(both.paused);
    CHECK(both.pause_timeout_ms == 5000);
    CHECK(both.maintenance); // the other mode is kept
    REQUIRE(store->set_maintenance("web", false, "", 0, "maintenance off").ok());
    auto paused_only = store->traffic("web");
    CHECK_FALSE(paused_only.maintenance);
    CHECK(paused_only.message.empty());
    CHECK(paused_only.maintenance_since.empty());
    CHECK(paused_only.paused);

    auto audit = store->audit("web");
    REQUIRE(audit.size() >= 4);
    CHECK(audit.back().detail == "maintenance off");
    CHECK(audit.back().release == id);
    // [deploy] idle_stop: asleep and awake again, not audited (the agent does it by itself).
    const auto audited = store->audit("web").size();
    CHECK_FALSE(store->traffic("web").sleeping);
    REQUIRE(store->set_sleeping("web", true).ok());
    CHECK(store->traffic("web").sleeping);
    CHECK(store->traffic("web").paused); // the other fields are kept
    REQUIRE(store->set_sleeping("web", false).ok());
    CHECK_FALSE(store->traffic("web").sleeping);
    CHECK(store->audit("web").size() == audited);
    REQUIRE(store->set_sleeping("nope", true).ok()); // no such app: no row
    CHECK_FALSE(store->traffic("nope").sleeping);
    CHECK(store->set_paused("nope", true, 1, "x").error().kind == ErrorKind::not_found);
    CHECK(store->set_maintenance("nope", true, "", 0, "x").error().kind == ErrorKind::not_found);

    REQUIRE(store->destroy_app("web", "destroyed").ok());
    CHECK_FALSE(store->traffic("web").paused);
}

TEST_CASE("store records a webhook delivery once, and keeps the newest 200 of an app") {
    test::TempDir dir;
    auto store = open_store(dir);
    agent::DeliveryRow row{"hello", "github", "d-1", "", "push", "", "", "", "received", ""};
    auto first = store->add_delivery(row);
    REQUIRE(first);
    CHECK(*first);
    row.result = "other";
    auto again = store->add_delivery(row);
    REQUIRE(again);
    CHECK_FALSE(*again); // seen before: nothing changed
    REQUIRE(store->delivery("hello", "github", "d-1"));
    CHECK(store->delivery("hello", "github", "d-1")->result == "received");
    CHECK_FALSE(store->delivery("hello", "gitlab", "d-1")); // another provider's id space
    row.ref = "refs/heads/main";
    row.commit = std::string(40, 'a');
    row.release = "v3";
    row.result = "deploying";
    REQUIRE(store->finish_delivery(row));
    auto finished = store->delivery("hello", "github", "d-1");
    REQUIRE(finished);
    CHECK(finished->release == "v3");
    CHECK(finished->result == "deploying");
    CHECK(finished->commit == std::string(40, 'a'));
    for (int i = 2; i <= 205; ++i) {
        row.delivery = "d-" + std::to_string(i);
        REQUIRE(store->add_delivery(row));
    }
    auto kept = store->deliveries("hello", 1000);
    CHECK(kept.size() == 200);
    CHECK(kept.front().delivery == "d-205");                // newest first
    CHECK_FALSE(store->delivery("hello", "github", "d-1")); // the oldest went
    CHECK(store->deliveries("other", 10).empty());
    REQUIRE(store->put_hook_secret("hello", "sealed", std::nullopt));
    CHECK(store->hook_secret("hello") == std::optional<std::string>("sealed"));
    REQUIRE(store->destroy_app("hello", "test"));
    CHECK_FALSE(store->hook_secret("hello"));
    CHECK(store->deliveries("hello", 10).empty());
}

TEST_CASE("store keeps an app's previews: updated in place, listed oldest first, gone with "
          "either app") {
    test::TempDir dir;
    auto store = open_store(dir);
    agent::PreviewRow row{
        "hello", 3,  "hello-pr-3", "github", "refs/pull/3/head", std::string(40, 'a'), "v1",
        false,   "", "",           ""};
    REQUIRE(store->put_preview(row));
    REQUIRE(store->put_preview({"hello", 4, "hello-pr-4", "gitlab", "refs/merge-requests/4/head",
                                std::string(40, 'b'), "v1", false, "", "", ""}));
    REQUIRE(store->put_preview({"other", 1, "other-pr-1", "gitea", "refs/pull/1/head",
                                std::string(40, 'c'), "v1", false, "", "", ""}));
    const auto created = store->previews("hello").front().created_at;
    row.commit = std::string(40, 'd');
    row.release = "v2";
    row.closing = true;
    row.detail = "closing";
    REQUIRE(store->put_preview(row)); // the same pull request: updated, not added
    auto rows = store->previews("hello");
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].number == 3); // still the oldest
    CHECK(rows[0].created_at == created);
    CHECK(rows[0].commit == std::string(40, 'd'));
    CHECK(rows[0].release == "v2");
    CHECK(rows[0].closing);
    CHECK(rows[0].detail == "closing");
    CHECK(rows[1].ref == "refs/merge-requests/4/head");
    REQUIRE(store->remove_preview("hello", 3));
    CHECK(store->previews("hello").size() == 1);
    REQUIRE(store->destroy_app("hello-pr-4", "test")); // destroying a preview forgets it
    CHECK(store->previews("hello").empty());
    REQUIRE(store->destroy_app("other", "test")); // and destroying its app
    CHECK(store->previews("other").empty());
}
