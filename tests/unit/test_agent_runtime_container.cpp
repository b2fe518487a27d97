// Running engine CLIs (agent/runtime/engine_cli) and the argv the container
// runtime gives them. The engine here is a stand-in shell script that records
// its arguments: these are unit tests of the agent's logic. The real Docker
// and Podman engines are exercised by tests/integration/test_container_*.sh.

#include <agent/runtime/engine_cli.hpp>
#include <agent/runtime/process.hpp>
#include <agent/runtime/runtime.hpp>
#include <common/config.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <fcntl.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "scoped_env.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using agent::runtime::CliCall;
using agent::runtime::run_cli;

namespace {

// A fake `docker`: appends its argv (one line, args separated by '|') to
// calls.log, answers `version`, `inspect` from state.txt, and fails `build`
// when fail_build exists.
class FakeEngine {
  public:
    FakeEngine() {
        m_bin = m_dir.path() / "docker";
        auto script =
            "#!/bin/sh\n"
            "dir=" +
            m_dir.path().string() +
            "\n"
            "line=''; for a in \"$@\"; do line=\"$line|$a\"; done\n"
            "echo \"$line\" >> $dir/calls.log\n"
            "case \"$1\" in\n"
            "  version) echo 20.10.99 ;;\n"
            "  inspect) if [ -e $dir/inspect_error ]; then cat $dir/inspect_error >&2;\n"
            "           exit 1; fi; cat $dir/state.txt ;;\n"
            "  build) echo 'Step 1/2 : FROM scratch'; echo ' ---> Using cache';\n"
            "         echo ' ---> 0123456789ab'; echo ' ---> Running in 5555aaaa7777';\n"
            "         echo ' ---> ba9876543210';\n"
            "         if [ -e $dir/fail_build ]; then echo 'boom' >&2; exit 1; fi ;;\n"
            "  run) if [ -e $dir/run_conflict ]; then rm $dir/run_conflict;\n"
            "         echo 'Conflict. The container name is already in use' >&2; exit 125; fi;\n"
            "       echo \"API_KEY=${API_KEY:-}\" >> $dir/run_env.log; echo 0123456789abcdef ;;\n"
            "  ps) echo 'web|v1||'; echo 'api|v7||'; echo 'api|v7||worker.2'; echo 'web|v1|run|' "
            ";;\n"
            "esac\n";
        REQUIRE(common::atomic_write_file(m_bin, script).ok());
        ::chmod(m_bin.c_str(), 0755);
        set_state("running|true|false|false|0|" + std::to_string(::getpid()) +
                  "|0|67108864|2026-01-01T00:00:00Z");
    }
    void set_state(const std::string& line) {
        REQUIRE(common::atomic_write_file(m_dir.path() / "state.txt", line + "\n").ok());
    }
    void fail_inspect(const std::string& message) {
        REQUIRE(common::atomic_write_file(m_dir.path() / "inspect_error", message + "\n").ok());
    }
    void fail_builds() { REQUIRE(common::atomic_write_file(m_dir.path() / "fail_build", "").ok()); }
    std::string calls() const {
        auto text = common::read_file(m_dir.path() / "calls.log");
        return text.ok() ? *text : std::string();
    }
    // The recorded call whose first argument is `verb`.
    std::string call(const std::string& verb) const {
        auto all = calls();
        auto at = all.find("|" + verb + "|");
        if (at == std::string::npos)
            return {};
        return all.substr(at, all.find('\n', at) - at);
    }
    const fs::path& bin() const { return m_bin; }
    const fs::path& dir() const { return m_dir.path(); }

  private:
    test::TempDir m_dir;
    fs::path m_bin;
};

std::unique_ptr<agent::runtime::Runtime> make_runtime(const FakeEngine& engine,
                                                      const std::string& kind = "docker",
                                                      const std::string& network = "host") {
    auto runtime = agent::runtime::make_container_runtime(
        {kind, engine.bin().string(), network, "a1b2c3d4e5f60718", {}, {}});
    REQUIRE_MESSAGE(runtime.ok(), (runtime.ok() ? std::string() : runtime.error().message));
    return std::move(*runtime);
}

common::AppConfig config_of(const std::string& toml) {
    auto config = common::parse_config(toml, "deploy.toml");
    REQUIRE_MESSAGE(config.ok(), (config.ok() ? std::string() : config.error().message));
    return *config;
}

// A build whose output and notes go nowhere.
agent::runtime::BuildSpec quiet_build(agent::runtime::ReleaseRef release, const fs::path& dir,
                                      const common::AppConfig& config) {
    agent::runtime::BuildSpec spec;
    spec.release = std::move(release);
    spec.release_dir = dir;
    spec.config = &config;
    spec.on_line = [](std::string_view) {};
    spec.on_note = [](std::string_view) {};
    return spec;
}

} // namespace

TEST_CASE("run_cli captures output, exit code and streams lines as they come") {
    std::vector<std::string> lines;
    CliCall call;
    call.argv = {"/bin/sh", "-c", "echo one; echo two >&2; exit 3"};
    call.on_line = [&](std::string_view line) { lines.emplace_back(line); };
    auto result = run_cli(call);
    REQUIRE(result.ok());
    CHECK(result->exit_code == 3);
    CHECK_FALSE(result->ok());
    CHECK(lines == std::vector<std::string>{"one", "two"});
    CHECK(result->output == "one\ntwo\n");
    CHECK(result->last_line() == "two");
}

TEST_CASE("run_cli stops a call that runs past its timeout, with its whole process group") {
    test::TempDir dir;
    auto marker = dir.path() / "child-alive";
    CliCall call;
    // The grandchild would touch the marker after 3 s if it survived.
    call.argv = {"/bin/sh", "-c", "(sleep 3; touch " + marker.string() + ") & sleep 30"};
    call.timeout = 300ms;
    auto start = std::chrono::steady_clock::now();
    auto result = run_cli(call);
    REQUIRE(result.ok());
    CHECK(result->timed_out);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    std::this_thread::sleep_for(3500ms);
    CHECK_FALSE(fs::exists(marker));
}

TEST_CASE("run_cli stops a call when cancelled") {
    std::atomic<bool> cancel{false};
    CliCall call;
    call.argv = {"/bin/sleep", "30"};
    call.timeout = 0ms;
    call.cancel = &cancel;
    std::thread flip([&] {
        std::this_thread::sleep_for(200ms);
        cancel = true;
    });
    auto result = run_cli(call);
    flip.join();
    REQUIRE(result.ok());
    CHECK(result->cancelled);
    CHECK_FALSE(result->timed_out);
}

TEST_CASE("run_cli refuses a missing binary and leaks no descriptor into the child") {
    CliCall missing_call;
    missing_call.argv = {"/nonexistent/docker", "version"};
    auto missing = run_cli(missing_call);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().message.find("/nonexistent/docker") != std::string::npos);

    test::TempDir dir;
    int opened = ::open((dir.path() / "held").c_str(), O_CREAT | O_WRONLY, 0600);
    REQUIRE(opened >= 0);
    int fd = ::dup2(opened, 100); // a descriptor without O_CLOEXEC, as a listening socket may be
    ::close(opened);
    REQUIRE(fd == 100);
    CliCall list_call;
    list_call.argv = {"/bin/sh", "-c", "ls /proc/self/fd"};
    auto listed = run_cli(list_call);
    ::close(fd);
    REQUIRE(listed.ok());
    CHECK(listed->output.find("2\n") != std::string::npos);
    CHECK(listed->output.find("\n100\n") == std::string::npos);
}

TEST_CASE("container runtime: a missing or silent engine is a clear error") {
    auto missing = agent::runtime::make_container_runtime(
        {"docker", "/nonexistent/docker", "host", "a1b2c3d4e5f60718", {}, {}});
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().message.find("--engine docker") != std::string::npos);

    test::TempDir dir;
    auto silent = dir.path() / "docker";
    REQUIRE(common::atomic_write_file(silent, "#!/bin/sh\nexec sleep 60\n").ok());
    ::chmod(silent.c_str(), 0755);
    auto start = std::chrono::steady_clock::now();
    auto hung = agent::runtime::make_container_runtime(
        {"docker", silent.string(), "host", "a1b2c3d4e5f60718", {}, {}});
    REQUIRE_FALSE(hung.ok());
    CHECK(hung.error().message.find("did not answer") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    CHECK_FALSE(agent::runtime::engine_answers(silent.string(), 300ms));
}

TEST_CASE("container runtime builds with the release's Dockerfile, args, memory and labels") {
    FakeEngine engine;
    auto runtime = make_runtime(engine);
    CHECK(runtime->name() == "docker");
    CHECK(runtime->version() == "20.10.99");
    test::TempDir release;
    fs::create_directories(release.path() / "docker");
    REQUIRE(
        common::atomic_write_file(release.path() / "docker/web.Dockerfile", "FROM scratch\n").ok());
    auto config = config_of("app = \"web\"\n[build]\ndockerfile = \"docker/web.Dockerfile\"\n"
                            "memory = \"256m\"\ntimeout = \"30s\"\nargs = { MODE = \"prod\" }\n");
    std::vector<std::string> lines;
    agent::runtime::BuildSpec spec;
    spec.release = {"web", "v3"};
    spec.release_dir = release.path();
    spec.config = &config;
    spec.on_line = [&](std::string_view line) { lines.emplace_back(line); };
    spec.on_note = [](std::string_view) {};
    REQUIRE(runtime->build(spec).ok());
    auto build = engine.call("build");
    CHECK(build.find("|-f|" + (release.path() / "docker/web.Dockerfile").string() + "|") !=
          std::string::npos);
    CHECK(build.find("|-t|deployctl/web:v3-a1b2c3d4|") != std::string::npos);
    CHECK(build.find("|--memory|268435456|") != std::string::npos);
    CHECK(build.find("|--build-arg|MODE=prod|") != std::string::npos);
    CHECK(build.find("|--label|dev.deployctl.agent=a1b2c3d4e5f60718|") != std::string::npos);
    CHECK(build.find("|--label|dev.deployctl.app=web|") != std::string::npos);
    CHECK(build.find("dev.deployctl.release") == std::string::npos);      // the tag names it
    CHECK(build.substr(build.rfind('|') + 1) == release.path().string()); // the context
    CHECK(lines == std::vector<std::string>{"Step 1/2 : FROM scratch", " ---> Using cache",
                                            " ---> 0123456789ab", " ---> Running in 5555aaaa7777",
                                            " ---> ba9876543210"});
    CHECK(engine.call("rmi").empty()); // a good build keeps its layers

    engine.fail_builds();
    auto failed = runtime->build(spec);
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.error().message == "build failed: docker build exited with status 1: boom");
    // The layers the failed build made are removed, newest first; nothing else.
    auto calls = engine.calls();
    auto newest = calls.find("|rmi|ba9876543210\n");
    auto oldest = calls.find("|rmi|0123456789ab\n");
    CHECK(newest != std::string::npos);
    CHECK(oldest != std::string::npos);
    CHECK(newest < oldest);
    CHECK(calls.find("|rmi|5555aaaa7777") == std::string::npos);
}

TEST_CASE(
    "container runtime refuses a Dockerfile outside the uploaded tree without calling the engine") {
    FakeEngine engine;
    auto runtime = make_runtime(engine);
    test::TempDir release;
    REQUIRE(common::atomic_write_file(release.path() / "Dockerfile", "FROM scratch\n").ok());
    fs::create_symlink("/etc/passwd", release.path() / "outside");
    fs::create_symlink("Dockerfile", release.path() / "inside");
    for (const char* path : {"../Dockerfile", "/etc/passwd", "missing/Dockerfile", "outside"}) {
        CAPTURE(path);
        auto config =
            config_of(std::string("app = \"web\"\n[build]\ndockerfile = \"") + path + "\"\n");
        auto built = runtime->build(quiet_build({"web", "v1"}, release.path(), config));
        REQUIRE_FALSE(built.ok());
        CHECK(built.error().message.find("is not a file of the uploaded tree") !=
              std::string::npos);
    }
    CHECK(engine.call("build").empty());

    // A symlink to a Dockerfile of the tree is followed, here and for the choice of runtime.
    auto config = config_of("app = \"web\"\n[build]\ndockerfile = \"inside\"\n");
    CHECK(runtime->build(quiet_build({"web", "v1"}, release.path(), config)).ok());
    CHECK(engine.call("build").find("|-f|" + fs::canonical(release.path() / "Dockerfile").string() +
                                    "|") != std::string::npos);
    test::TempDir linked;
    REQUIRE(common::atomic_write_file(linked.path() / "Dockerfile.real", "FROM scratch\n").ok());
    fs::create_symlink("Dockerfile.real", linked.path() / "Dockerfile");
    CHECK(agent::runtime::wants_container(config_of("app = \"web\"\n"), linked.path()));
}

TEST_CASE("container runtime runs the app with PORT, env, memory, labels and host networking") {
    FakeEngine engine;
    auto runtime = make_runtime(engine);
    test::TempDir data;
    auto config = config_of(
        "app = \"web\"\n[run]\nmemory = \"64m\"\ncpus = 0.5\npids = 100\n[env]\nGREETING = "
        "\"hi there\"\n");
    agent::runtime::AppLaunch launch{
        "web",
        "v2",
        data.path() / "release",
        data.path() / "v2.app.log",
        &config,
        41234,
        {{"API_KEY", "sekret-value-1234"}, {"GREETING", "hello from the agent"}},
        {"API_KEY"},
        {"sekret-value-1234"}};
    auto process = runtime->start(launch);
    REQUIRE_MESSAGE(process.ok(), (process.ok() ? std::string() : process.error().message));
    CHECK(process->pid == ::getpid()); // the State.Pid the fake engine reported
    auto run = engine.call("run");
    CHECK(run.find("|--name|deployctl-web-v2-a1b2c3d4|") != std::string::npos);
    CHECK(run.find("|--network|host|") != std::string::npos);
    CHECK(run.find("|--publish|") == std::string::npos);
    CHECK(run.find("|--env|PORT=41234|") != std::string::npos);
    // The agent's GREETING wins over deploy.toml's; a secret is passed by
    // name, its value only in the engine CLI's environment.
    CHECK(run.find("|--env|GREETING=hello from the agent|") != std::string::npos);
    CHECK(run.find("GREETING=hi there") == std::string::npos);
    CHECK(run.find("|--env|API_KEY|") != std::string::npos);
    CHECK(engine.calls().find("sekret") == std::string::npos);
    CHECK(common::read_file(engine.dir() / "run_env.log").value() == "API_KEY=sekret-value-1234\n");
    CHECK(run.find("|--memory|67108864|--memory-swap|67108864|") != std::string::npos);
    CHECK(run.find("|--cpus|0.5|") != std::string::npos);
    CHECK(run.find("|--pids-limit|100|") != std::string::npos);
    CHECK(run.find("|--restart|no|") != std::string::npos);
    CHECK(run.find("|--init|") != std::string::npos);
    CHECK(run.find("|--label|dev.deployctl.app=web|") != std::string::npos);
    CHECK(run.substr(run.rfind('|') + 1) == "deployctl/web:v2-a1b2c3d4"); // the image's CMD runs
    CHECK(engine.call("rm").empty());                                     // nothing was in the way

    // A container of an earlier start of this release is in the way: replaced.
    REQUIRE(common::atomic_write_file(engine.dir() / "run_conflict", "").ok());
    REQUIRE(runtime->start(launch).ok());
    auto calls = engine.calls();
    auto rm = calls.find("|rm|--force|deployctl-web-v2-a1b2c3d4");
    REQUIRE(rm != std::string::npos);
    CHECK(calls.find("|run|", rm) != std::string::npos); // run again after the removal

    runtime->serving({"web", "v2"});
    CHECK(engine.call("update") == "|update|--restart|unless-stopped|deployctl-web-v2-a1b2c3d4");
    runtime->shutdown();
}

TEST_CASE("container runtime publishes the port on 127.0.0.1 off host networking, and podman gets "
          "ulimits") {
    FakeEngine engine;
    auto runtime = make_runtime(engine, "podman", "bridge");
    test::TempDir data;
    auto config = config_of("app = \"web\"\n[run]\nport = 3000\ncommand = \"node server.js\"\n");
    agent::runtime::AppLaunch launch{
        "web", "v1", data.path(), data.path() / "v1.app.log", &config, 41000, {}, {}, {}};
    REQUIRE(runtime->start(launch).ok());
    auto run = engine.call("run");
    CHECK(run.find("|--network|bridge|--restart|no|") != std::string::npos);
    CHECK(run.find("|--publish|127.0.0.1:41000:3000|") != std::string::npos);
    CHECK(run.find("|--env|PORT=3000|") != std::string::npos);
    CHECK(run.find("|--ulimit|nofile=") != std::string::npos);
    CHECK(run.find("|--ulimit|nproc=4096:4096|") != std::string::npos);
    CHECK(run.find("|/bin/sh|-c|node server.js") != std::string::npos); // run.command replaces CMD
    runtime->serving({"web", "v1"}); // podman 4 has no `update --restart`: nothing is called
    CHECK(engine.call("update").empty());
    runtime->shutdown();
}

TEST_CASE("container runtime explains why a container stopped while starting") {
    FakeEngine engine;
    auto runtime = make_runtime(engine);
    agent::runtime::AppProcess gone{999999, 1};
    engine.set_state("exited|false|false|true|137|0|0|67108864|2026-01-01T00:00:00Z");
    CHECK(runtime->exited({"web", "v1"}, gone) ==
          std::optional<std::string>("container exceeded memory limit 64m while starting"));
    engine.set_state("exited|false|false|false|3|0|0|0|2026-01-01T00:00:00Z");
    CHECK(runtime->exited({"web", "v1"}, gone) ==
          std::optional<std::string>("container exited with status 3 while starting"));
    auto me = agent::runtime::AppProcess{::getpid(), 0};
    me.start = agent::runtime::process_start_time(::getpid()).value_or(0);
    engine.set_state("running|true|false|false|0|" + std::to_string(::getpid()) +
                     "|0|0|2026-01-01T00:00:00Z");
    CHECK_FALSE(runtime->exited({"web", "v1"}, me).has_value());
}

TEST_CASE("container runtime removes a container it could not start and never replaces one when "
          "the engine fails") {
    FakeEngine engine;
    auto runtime = make_runtime(engine);
    test::TempDir data;
    auto config = config_of("app = \"web\"\n");
    engine.fail_inspect("Error response from daemon: i/o timeout");
    agent::runtime::AppLaunch launch{
        "web", "v4", data.path(), data.path() / "v4.app.log", &config, 41500, {}, {}, {}};
    REQUIRE_FALSE(runtime->start(launch).ok());
    auto calls = engine.calls();
    CHECK(calls.rfind("|rm|--force|deployctl-web-v4-a1b2c3d4") > calls.find("|run|"));

    // The engine fails: pending, never "gone" (which would replace a serving container).
    CHECK(runtime->recover({"web", "v4"}, data.path() / "v4.app.log").kind ==
          agent::runtime::Runtime::Recovery::pending);
    engine.fail_inspect("Error: No such container: deployctl-web-v4-a1b2c3d4");
    auto gone = runtime->recover({"web", "v4"}, data.path() / "v4.app.log");
    CHECK(gone.kind == agent::runtime::Runtime::Recovery::none);
    CHECK(gone.note == "container was gone");
    runtime->shutdown();
}

TEST_CASE("run_cli cuts a line without end into pieces of 64 KiB") {
    std::vector<std::size_t> sizes;
    CliCall call;
    call.argv = {"/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a"};
    call.on_line = [&](std::string_view line) { sizes.push_back(line.size()); };
    call.capture = false;
    auto result = run_cli(call);
    REQUIRE(result.ok());
    CHECK(result->output.empty());
    CHECK(sizes == std::vector<std::size_t>{65536, 65536, 65536, 200000 - 3 * 65536});
}

TEST_CASE("container runtime reports a restart by the engine and lists its containers") {
    FakeEngine engine;
    auto runtime = make_runtime(engine);
    test::TempDir data;
    engine.set_state("restarting|false|true|false|1|0|2|0|2026-01-01T00:00:00Z");
    CHECK(runtime->recover({"web", "v1"}, data.path() / "v1.app.log").kind ==
          agent::runtime::Runtime::Recovery::pending);
    engine.set_state("running|true|false|false|0|" + std::to_string(::getpid()) +
                     "|2|0|2026-01-01T00:00:00Z");
    auto recovered = runtime->recover({"web", "v1"}, data.path() / "v1.app.log");
    CHECK(recovered.kind == agent::runtime::Runtime::Recovery::running);
    CHECK(recovered.process.pid == ::getpid());
    CHECK(recovered.note == "container restarted by docker (restart 2)");
    auto instances = runtime->instances();
    REQUIRE(instances.size() == 3); // not the one-off ("run")
    CHECK(instances[1].app == "api");
    CHECK(instances[1].id == "v7");
    CHECK(instances[1].process.empty());
    CHECK(instances[2].process == "worker"); // a [processes] container
    CHECK(instances[2].instance == 2);
    CHECK(engine.call("ps").find("|--filter|label=dev.deployctl.agent=a1b2c3d4e5f60718|") !=
          std::string::npos);
    runtime->remove({"web", "v1"});
    CHECK(engine.call("rmi") == "|rmi|deployctl/web:v1-a1b2c3d4");
    runtime->shutdown();
}

TEST_CASE("a release runs in a container when it names or has a Dockerfile") {
    test::TempDir release;
    auto plain = config_of("app = \"web\"\n");
    CHECK_FALSE(agent::runtime::wants_container(plain, release.path()));
    REQUIRE(common::atomic_write_file(release.path() / "Dockerfile", "FROM scratch\n").ok());
    CHECK(agent::runtime::wants_container(plain, release.path()));
    auto named = config_of("app = \"web\"\n[build]\ndockerfile = \"ops/Containerfile\"\n");
    test::TempDir other;
    CHECK(agent::runtime::wants_container(named, other.path()));
}

TEST_CASE("docker_socket_path: the CLI's daemon when it is a local unix socket") {
    test::ScopedEnv context("DOCKER_CONTEXT", nullptr);
    {
        test::ScopedEnv host("DOCKER_HOST", nullptr);
        CHECK(agent::runtime::docker_socket_path() == "/var/run/docker.sock");
    }
    {
        test::ScopedEnv host("DOCKER_HOST", "unix:///run/user/1000/docker.sock");
        CHECK(agent::runtime::docker_socket_path() == "/run/user/1000/docker.sock");
    }
    {
        test::ScopedEnv host("DOCKER_HOST", "tcp://10.0.0.2:2376");
        CHECK(agent::runtime::docker_socket_path().empty());
    }
    {
        test::ScopedEnv host("DOCKER_HOST", "ssh://deploy@web1");
        CHECK(agent::runtime::docker_socket_path().empty());
    }
    test::ScopedEnv host("DOCKER_HOST", nullptr);
    test::ScopedEnv chosen("DOCKER_CONTEXT", "remote");
    CHECK(agent::runtime::docker_socket_path().empty());
}

TEST_CASE("a docker build that met an image removed during its cache lookup is tried again") {
    using agent::runtime::image_vanished_during_build;
    CHECK(image_vanished_during_build(
        "unable to find image \"sha256:8927da080b78dcb6c9d1caa5775402766f5903086c0a212bb486f"
        "436f5d4a3fd\""));
    CHECK_FALSE(image_vanished_during_build("The command '/bin/sh -c make' returned a non-zero "
                                            "code: 2"));
    CHECK_FALSE(image_vanished_during_build("unable to find image 'app:latest' locally"));
}
