// The deployment engine (agent/deploy) with the real process runtime:
// /bin/sh build commands and a busybox httpd app.
#include <agent/deploy/service.hpp>
#include <agent/runtime/process.hpp>
#include <agent/store/blobs.hpp>
#include <agent/store/store.hpp>
#include <common/fs.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <thread>

#include "temp_dir.hpp"

using common::ErrorKind;
using common::State;
namespace fs = std::filesystem;

namespace {

bool have_busybox() {
    return fs::exists("/bin/busybox");
}

class Fixture {
  public:
    // `cgroup_root`: where the process engine looks for cgroups (its limits).
    explicit Fixture(std::string cgroup_root = "/sys/fs/cgroup")
        : m_data(m_dir.path() / "data"), m_cgroup_root(std::move(cgroup_root)) {
        restart();
    }
    ~Fixture() {
        m_service->stop();
        // Apps outlive the agent by design: stop them here.
        auto store = agent::Store::open(m_data.state_db());
        if (store)
            for (const auto& row : (*store)->all_releases())
                if (row.pid > 0 && agent::runtime::process_matches(row.pid, row.pid_start))
                    ::kill(-row.pid, SIGKILL);
    }
    void restart() {
        if (m_service)
            m_service->stop();
        agent::ProxySettings proxy;
        proxy.listen = "127.0.0.1:18080";
        m_service =
            agent::make_service({m_data, "process", proxy, "", "", "host", 4, m_cgroup_root});
        auto started = m_service->start();
        REQUIRE(started.ok());
    }
    agent::Service& service() { return *m_service; }
    const agent::DataDir& data() const { return m_data; }

    common::ManifestEntry blob(const std::string& path, const std::string& content,
                               common::EntryKind kind = common::EntryKind::file) {
        agent::BlobStore blobs(m_data.blobs());
        auto digest = common::sha256_hex(content);
        REQUIRE(blobs.put(digest, content).ok());
        return {path, kind, digest, content.size(), ""};
    }

    common::Result<agent::ReleaseInfo> create(const std::string& toml) {
        agent::NewDeployment d;
        d.app = "web";
        d.config_text = toml;
        auto config = common::parse_config(toml, "deploy.toml");
        REQUIRE(config.ok());
        d.config = *config;
        d.manifest.entries = {blob("healthz", "ok\n")};
        return m_service->create_deployment(d);
    }

    std::string deploy(const std::string& toml) {
        agent::NewDeployment d;
        d.app = "web";
        d.config_text = toml;
        auto config = common::parse_config(toml, "deploy.toml");
        REQUIRE(config.ok());
        d.config = *config;
        d.manifest.entries = {
            blob("index.html", "hello\n"),
            blob("healthz", "ok\n"),
            blob("bin/tool", "#!/bin/sh\necho tool\n", common::EntryKind::executable),
            {"current", common::EntryKind::symlink, "", 0, "bin/tool"}};
        auto created = m_service->create_deployment(d);
        REQUIRE(created.ok());
        CHECK(created->state == State::queued);
        return created->id;
    }

    agent::ReleaseInfo wait_settled(const std::string& id) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        for (;;) {
            auto info = m_service->release("web", id);
            REQUIRE(info.ok());
            // The engine commits the state, then appends its "state" event:
            // settled means both, as the events stream waits for both too.
            if (common::is_settled(info->state) &&
                events(id).find(R"("state":")" + std::string(common::to_string(info->state)) +
                                "\"") != std::string::npos)
                return *info;
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }

    std::string events(const std::string& id) {
        auto text = common::read_file(m_data.event_log("web", id));
        return text ? *text : "";
    }

  private:
    test::TempDir m_dir;
    agent::DataDir m_data;
    std::string m_cgroup_root;
    std::unique_ptr<agent::Service> m_service;
};

const std::string k_app = R"(app = "web"
[build]
command = "echo building; echo built > built.txt"
[run]
command = "exec busybox httpd -f -p 127.0.0.1:$PORT -h ."
health = { path = "/healthz", interval = "100ms", timeout = "5s" }
[deploy]
drain = "0s"
standby = "0s"
keep = 1
[targets.production]
domains = ["web.example.com"]
)";

std::string with(std::string toml, const std::string& from, const std::string& to) {
    auto at = toml.find(from);
    REQUIRE(at != std::string::npos);
    return toml.replace(at, from.size(), to);
}

} // namespace

TEST_CASE("engine deploys a release to PRODUCTION with the process runtime") {
    if (!have_busybox())
        return; // needs busybox httpd as the app
    Fixture f;
    auto id = f.deploy(k_app);
    auto info = f.wait_settled(id);
    REQUIRE_MESSAGE(info.state == State::production, info.error);
    CHECK(info.port > 0);
    auto dir = f.data().release_dir("web", id);
    CHECK(common::read_file(dir / "built.txt").value() == "built\n");
    CHECK(fs::is_symlink(dir / "current"));
    CHECK((fs::status(dir / "bin/tool").permissions() & fs::perms::owner_exec) != fs::perms::none);
    auto events = f.events(id);
    CHECK(events.find(R"("stream":"build")") != std::string::npos);
    CHECK(events.find(R"("line":"building")") != std::string::npos);
    CHECK(events.find(R"("event":"health")") != std::string::npos);
    CHECK(events.rfind(R"("state":"PRODUCTION")") > events.rfind(R"("state":"PROVISIONING")"));
    // The switch is recorded first, then the routing table is written.
    std::string routes;
    for (int i = 0; i < 100 && routes.find("web.example.com") == std::string::npos; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        auto text = common::read_file(f.data().proxy_routes());
        routes = text.ok() ? *text : std::string();
    }
    CHECK(routes.find("web.example.com") != std::string::npos);
    CHECK(routes.find("127.0.0.1:" + std::to_string(info.port)) != std::string::npos);
    auto status = f.service().status("web");
    REQUIRE(status.ok());
    CHECK(status->production == id);
    CHECK(status->url == "http://web.localhost:18080/");
    CHECK(status->domains == std::vector<std::string>{"web.example.com"});
}

TEST_CASE("engine fails a build that exits non-zero and keeps PRODUCTION serving") {
    if (!have_busybox())
        return;
    Fixture f;
    auto v1 = f.deploy(k_app);
    REQUIRE(f.wait_settled(v1).state == State::production);
    auto v2 = f.deploy(with(k_app, "echo built > built.txt", "echo oops >&2; exit 3"));
    auto info = f.wait_settled(v2);
    CHECK(info.state == State::failed);
    CHECK(info.error == "build failed: command exited with status 3");
    CHECK(f.events(v2).find(R"("line":"oops")") != std::string::npos);
    CHECK(f.service().status("web")->production == v1);
    CHECK(f.service().release("web", v1)->port > 0);
}

TEST_CASE("engine fails a build that runs past build.timeout") {
    Fixture f;
    auto toml = with(k_app, "[build]\n", "[build]\ntimeout = \"1s\"\n");
    auto id = f.deploy(with(toml, "echo built > built.txt", "sleep 30"));
    auto info = f.wait_settled(id);
    CHECK(info.state == State::failed);
    CHECK(info.error == "build timed out after 1s");
}

TEST_CASE("engine fails a release whose health check never passes") {
    if (!have_busybox())
        return;
    Fixture f;
    auto toml = with(k_app, R"(path = "/healthz", interval = "100ms", timeout = "5s")",
                     R"(path = "/missing", interval = "100ms", timeout = "1s")");
    auto info = f.wait_settled(f.deploy(toml));
    CHECK(info.state == State::failed);
    CHECK(info.error == "health check failed: no healthy answer from /missing within 1s "
                        "(last: HTTP 404)");
    CHECK(info.port == 0); // the app was stopped
}

TEST_CASE("engine fails a release whose app exits while starting") {
    Fixture f;
    auto info = f.wait_settled(
        f.deploy(with(k_app, "exec busybox httpd -f -p 127.0.0.1:$PORT -h .", "exit 7")));
    CHECK(info.state == State::failed);
    CHECK(info.error == "app exited with status 7 while starting");
}

TEST_CASE("engine switches releases, drains the old one and prunes beyond keep") {
    if (!have_busybox())
        return;
    Fixture f;
    auto v1 = f.deploy(k_app);
    REQUIRE(f.wait_settled(v1).state == State::production);
    auto v2 = f.deploy(k_app);
    REQUIRE(f.wait_settled(v2).state == State::production);
    auto v3 = f.deploy(k_app);
    REQUIRE(f.wait_settled(v3).state == State::production);
    std::this_thread::sleep_for(std::chrono::milliseconds(500)); // drain runs after the switch
    auto status = f.service().status("web");
    REQUIRE(status->releases.size() == 2); // keep = 1 beyond PRODUCTION: v1 pruned
    CHECK(status->releases[1].id == v2);
    CHECK(status->releases[1].state == State::inactive);
    CHECK(status->releases[1].port == 0); // drained
    CHECK_FALSE(fs::exists(f.data().release_dir("web", v1)));
    CHECK(f.service().release("web", v1).error().kind == ErrorKind::not_found);

    SUBCASE("rollback promotes the INACTIVE release") {
        auto back = f.service().rollback("web", std::nullopt);
        REQUIRE_MESSAGE(back.ok(), back.error().message);
        CHECK(back->release.id == v2);
        CHECK(back->release.state == State::production);
        CHECK(back->previous == v3);
        CHECK(f.service().release("web", v3)->state == State::inactive);
    }
    SUBCASE("PRODUCTION cannot be removed, INACTIVE can") {
        auto refused = f.service().remove("web", v3);
        REQUIRE_FALSE(refused.ok());
        CHECK(refused.error().kind == ErrorKind::refused);
        CHECK(refused.error().message == "release " + v3 +
                                             " is PRODUCTION and cannot be "
                                             "removed; roll back or deploy another release first");
        CHECK(f.service().remove("web", v2).ok());
        CHECK_FALSE(fs::exists(f.data().release_dir("web", v2)));
        auto none = f.service().rollback("web", std::nullopt);
        CHECK(none.error().kind == ErrorKind::refused);
        // v2 served before v3 (and v1 before it, pruned past keep): the reason names them.
        CHECK(none.error().message.starts_with("no earlier release to roll back to: "));
        CHECK(none.error().message.find("v2 was removed") != std::string::npos);
    }
    SUBCASE("rollback to a release that is not INACTIVE is refused") {
        CHECK(f.service().rollback("web", v3).error().kind == ErrorKind::refused);
        CHECK(f.service().rollback("web", "v42").error().kind == ErrorKind::not_found);
    }
}

TEST_CASE("engine adopts a running app after a restart and restarts a dead one") {
    if (!have_busybox())
        return;
    Fixture f;
    auto id = f.deploy(k_app);
    auto first = f.wait_settled(id);
    REQUIRE(first.state == State::production);
    auto store = agent::Store::open(f.data().state_db());
    REQUIRE(store.ok());
    auto pid = (*store)->get("web", id)->pid;
    f.restart();
    CHECK((*store)->get("web", id)->pid == pid); // adopted, not started twice
    ::kill(-pid, SIGKILL);
    // Restarted: the supervisor records the new process, then writes the event; both, in
    // 10 s.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while ((*store)->get("web", id)->pid == pid ||
           f.events(id).find("app exited; restarted") == std::string::npos) {
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(f.service().release("web", id)->port == first.port);
}

TEST_CASE("engine serves a [static] release through a static route, with no process") {
    Fixture f;
    const std::string site = R"(app = "web"
[build]
command = "mkdir -p dist/docs && echo '<h1>site</h1>' > dist/index.html"
[static]
dir = "dist"
spa = true
[deploy]
drain = "0s"
[targets.production]
domains = ["web.example.com"]
)";
    auto id = f.deploy(site);
    auto info = f.wait_settled(id);
    REQUIRE_MESSAGE(info.state == State::production, info.error);
    CHECK(info.port == 0);
    auto root = f.data().release_dir("web", id) / "dist";
    std::string text; // the switch is recorded first, then the routing table is written
    for (int i = 0; i < 100 && text.find(root.string()) == std::string::npos; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        auto read = common::read_file(f.data().proxy_routes());
        text = read ? *read : std::string();
    }
    auto routes = nlohmann::json::parse(text);
    REQUIRE(routes["routes"].size() == 2);
    for (const auto& route : routes["routes"]) {
        CHECK(route["release"] == id);
        CHECK_FALSE(route.contains("upstream"));
        CHECK(route["static"]["root"] == root.string());
        CHECK(route["static"]["spa"] == true);
    }
    CHECK(f.events(id).find("no process to start") != std::string::npos);

    SUBCASE("a restarted agent leaves it alone and keeps routing it") {
        f.restart();
        auto again = f.service().release("web", id);
        REQUIRE(again.ok());
        CHECK(again->state == State::production);
        auto text = common::read_file(f.data().proxy_routes()).value();
        CHECK(text.find(root.string()) != std::string::npos);
        CHECK(f.events(id).find("restarted") == std::string::npos);
    }
    SUBCASE("a build that does not produce the static dir fails and keeps the old one") {
        auto broken = f.deploy(with(site,
                                    "mkdir -p dist/docs && echo '<h1>site</h1>' > "
                                    "dist/index.html",
                                    "echo no output"));
        auto failed = f.wait_settled(broken);
        CHECK(failed.state == State::failed);
        CHECK(failed.error == "static dir \"dist\" does not exist after the build");
        auto status = f.service().status("web");
        REQUIRE(status.ok());
        CHECK(status->production == id);
    }
    SUBCASE("a static dir that is a symlink out of the release fails") {
        auto escaping = f.deploy(with(site,
                                      "mkdir -p dist/docs && echo '<h1>site</h1>' > "
                                      "dist/index.html",
                                      "ln -s /tmp dist"));
        auto failed = f.wait_settled(escaping);
        CHECK(failed.state == State::failed);
        CHECK(failed.error == "static dir \"dist\" points outside the release");
    }
}

TEST_CASE("engine shows the last lines an app wrote when it fails while starting") {
    Fixture f;
    SUBCASE("an app that exits: its lines before the failure, and where to see more") {
        auto id =
            f.wait_settled(f.deploy(with(k_app, "exec busybox httpd -f -p 127.0.0.1:$PORT -h .",
                                         "echo \\\"can't open file 'nope.py'\\\" >&2; exit 2")))
                .id;
        auto events = f.events(id);
        auto line = events.find(R"("line":"can't open file 'nope.py'","release":")" + id +
                                R"(","stream":"app")");
        auto hint = events.find("more: deployctl logs " + id);
        auto failed = events.find(R"("state":"FAILED")");
        CHECK(events.find(R"("line":"the app's output:")") != std::string::npos);
        REQUIRE(line != std::string::npos);
        REQUIRE(hint != std::string::npos);
        REQUIRE(failed != std::string::npos);
        CHECK(line < hint);
        CHECK(hint < failed);
    }
    SUBCASE("more than 20 lines: the last 20, and how many there were") {
        auto id =
            f.wait_settled(f.deploy(with(k_app, "exec busybox httpd -f -p 127.0.0.1:$PORT -h .",
                                         "i=1; while [ $i -le 25 ]; do echo line $i; i=$((i+1)); "
                                         "done; exit 3")))
                .id;
        auto events = f.events(id);
        CHECK(events.find("the app's last 20 lines of output (of 25):") != std::string::npos);
        CHECK(events.find(R"("line":"line 5")") == std::string::npos);
        CHECK(events.find(R"("line":"line 6")") != std::string::npos);
        CHECK(events.find(R"("line":"line 25")") != std::string::npos);
    }
    SUBCASE("an app that wrote nothing says so") {
        auto id =
            f.wait_settled(
                 f.deploy(with(k_app, "exec busybox httpd -f -p 127.0.0.1:$PORT -h .", "exit 4")))
                .id;
        CHECK(f.events(id).find("the app wrote no output before it failed; more: deployctl logs " +
                                id) != std::string::npos);
    }
}

TEST_CASE("engine refuses a deployment asking for limits the server's cgroups cannot apply") {
    test::TempDir no_cgroups; // no hierarchy at all: no controller is writable
    Fixture f(no_cgroups.path().string());
    for (const std::string& limit :
         {std::string("[run]\nmemory = \"64m\"\n"), std::string("[run]\ncpus = 0.5\n"),
          std::string("[run]\npids = 10\n"), std::string("[build]\nmemory = \"64m\"\n")}) {
        CAPTURE(limit);
        auto created = f.create("app = \"web\"\n" + limit);
        REQUIRE_FALSE(created.ok());
        CHECK(created.error().kind == common::ErrorKind::config);
        CHECK(created.error().message.find(
                  "deploy.toml asks for limits the process engine cannot apply on this server") !=
              std::string::npos);
        CHECK(created.error().message.find(no_cgroups.path().string()) != std::string::npos);
    }
    CHECK(f.create("app = \"web\"\n[run]\ncpus = 1\n")
              .error()
              .message.find("run.cpus needs the cpu controller") != std::string::npos);
    CHECK_FALSE(f.service().release("web", "v1").ok()); // nothing was created
    // Without limits, the same agent takes it.
    CHECK(f.create(k_app).ok());
}
