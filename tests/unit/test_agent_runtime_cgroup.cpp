#include <agent/runtime/cgroup.hpp>
#include <agent/runtime/process.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace agent::runtime::cgroup;

namespace {

void put(const fs::path& file, const std::string& text) {
    fs::create_directories(file.parent_path());
    REQUIRE(common::atomic_write_file(file, text).ok());
}

std::string text_of(const fs::path& file) {
    auto text = common::read_file(file);
    return text ? *text : std::string("(missing)");
}

// A v2 tree as a systemd server has it: the agent in system.slice/deploy-agent.service,
// with a second process beside it.
fs::path fake_v2(const fs::path& root, const std::string& offered = "cpu memory pids") {
    put(root / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma\n");
    put(root / "cgroup.subtree_control", "");
    const fs::path self = root / "system.slice" / "deploy-agent.service";
    put(self / "cgroup.controllers", offered + "\n");
    put(self / "cgroup.subtree_control", "");
    put(self / "cgroup.procs", "1234\n5678\n");
    return self;
}

Options options_for(const fs::path& root) {
    Options options;
    options.root = root;
    options.group = "deployctl-0123abcd";
    options.self = "system.slice/deploy-agent.service";
    return options;
}

} // namespace

TEST_CASE("cgroup names: APP/RELEASE.PROCESS.INSTANCE, builds and one-offs without instance") {
    CHECK(cgroup_name("web", "v3", "web", "1") == "web/v3.web.1");
    CHECK(cgroup_name("web", "v3", "build", "") == "web/v3.build");
    CHECK(cgroup_name("web", "v3", "run-0a1b2c3d", "") == "web/v3.run-0a1b2c3d");
}

TEST_CASE("cgroup values: cpu.max from cores, the OOM-kill count of v1 and v2, the v2 path") {
    CHECK(cpu_max(0.5) == "50000 100000");
    CHECK(cpu_max(2) == "200000 100000");
    CHECK(cpu_max(0.0001) == "1000 100000"); // the kernel's smallest quota
    CHECK(parse_oom_kills("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n") == 2);
    CHECK(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n") == 7);
    CHECK(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n") == 0); // an old v1 kernel
    CHECK(parse_oom_kills("") == 0);
    CHECK(v2_self_path("0::/system.slice/deploy-agent.service\n") ==
          std::optional<std::string>("system.slice/deploy-agent.service"));
    CHECK(v2_self_path("12:pids:/x\n4:memory:/y\n0::/\n") == std::optional<std::string>(""));
    CHECK_FALSE(v2_self_path("4:memory:/y\n").has_value());
}

TEST_CASE("cgroup v2: the agent moves to a leaf, controllers are enabled, limits written") {
    test::TempDir dir;
    const fs::path self = fake_v2(dir.path());
    auto cgroups = Cgroups::open(options_for(dir.path()));
    CHECK(cgroups.version() == Version::v2);
    CHECK(cgroups.missing().empty());
    CHECK(cgroups.base("memory") == self / "deployctl-0123abcd");
    // Nothing changes before the first cgroup is made.
    CHECK_FALSE(fs::exists(self / "deploy-agent"));
    CHECK_FALSE(fs::exists(self / "deployctl-0123abcd"));
    CHECK(text_of(self / "cgroup.subtree_control").empty());

    const std::string name = cgroup_name("web", "v1", "web", "1");
    REQUIRE(cgroups.create(name, {64ull << 20, 0.5, 100}).ok());
    // No internal processes: what ran in the agent's cgroup moved to its leaf,
    // then the controllers were enabled for the children.
    CHECK(text_of(self / "deploy-agent" / "cgroup.procs") == "5678"); // one pid a write
    CHECK(text_of(self / "cgroup.subtree_control") == "+memory +cpu +pids");
    const fs::path group = self / "deployctl-0123abcd";
    const fs::path app = group / "web" / "v1.web.1";
    CHECK(text_of(group / "cgroup.subtree_control") == "+memory +cpu +pids");
    CHECK(text_of(group / "web" / "cgroup.subtree_control") == "+memory +cpu +pids");
    CHECK(text_of(app / "memory.max") == "67108864");
    CHECK(text_of(app / "memory.swap.max") == "0");
    CHECK(text_of(app / "cpu.max") == "50000 100000");
    CHECK(text_of(app / "pids.max") == "100");
    CHECK(cgroups.procs_files(name) == std::vector<fs::path>{app / "cgroup.procs"});
    CHECK(cgroups.exists(name));
    CHECK(cgroups.children("web") == std::vector<std::string>{"v1.web.1"});
    CHECK(cgroups.memory_limit(name) == 64ull << 20);

    put(app / "memory.events", "low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\n");
    CHECK(cgroups.oom_kills(name) == 1);
    CHECK(cgroups.pids(name).empty());
    // Created again (a restart of the release): empty counters.
    REQUIRE(cgroups.create(name, {64ull << 20, 0, 0}).ok());
    CHECK(cgroups.oom_kills(name) == 0);
    CHECK_FALSE(fs::exists(app / "cpu.max"));

    cgroups.remove(name);
    CHECK_FALSE(fs::exists(app));
}

TEST_CASE("cgroup v2: only the controllers the agent's cgroup is offered") {
    test::TempDir dir;
    fake_v2(dir.path(), "cpu io");
    auto cgroups = Cgroups::open(options_for(dir.path()));
    CHECK(cgroups.version() == Version::v2);
    CHECK(cgroups.missing() == std::vector<std::string>{"memory", "pids"});
    CHECK(cgroups.unsupported({1 << 20, 1, 0}, "run") == "run.memory needs the memory controller");
    CHECK(cgroups.unsupported({0, 1, 0}, "run").empty());
    CHECK(cgroups.unsupported({0, 0, 5}, "run") == "run.pids needs the pids controller");
    CHECK_FALSE(cgroups.create("web/v1.web.1", {1 << 20, 0, 0}).ok());
    CHECK(cgroups.missing_note().find("no writable memory, pids controller under " +
                                      dir.path().string()) != std::string::npos);
}

TEST_CASE("cgroup v2 without controllers (a hybrid system's unified tree) is not used") {
    test::TempDir dir;
    fake_v2(dir.path(), "");
    auto cgroups = Cgroups::open(options_for(dir.path()));
    CHECK(cgroups.version() == Version::none);
    CHECK(cgroups.missing() == std::vector<std::string>{"memory", "cpu", "pids"});
    CHECK(cgroups.unsupported({}, "run").empty()); // no limit asked: nothing missing
    CHECK(cgroups.unsupported({0, 0.5, 0}, "run") == "run.cpus needs the cpu controller");
}

TEST_CASE("cgroup v1: a hierarchy per controller, the limits in their files") {
    test::TempDir dir;
    for (const char* c : {"memory", "cpu", "pids"})
        put(dir.path() / c / "cgroup.procs", "");
    Options options;
    options.root = dir.path();
    options.group = "deployctl-0123abcd";
    auto cgroups = Cgroups::open(options);
    CHECK(cgroups.version() == Version::v1);
    CHECK(cgroups.missing().empty());
    const std::string name = cgroup_name("web", "v2", "web", "1");
    REQUIRE(cgroups.create(name, {64ull << 20, 0.5, 100}).ok());
    const fs::path memory = dir.path() / "memory" / "deployctl-0123abcd" / "web" / "v2.web.1";
    const fs::path cpu = dir.path() / "cpu" / "deployctl-0123abcd" / "web" / "v2.web.1";
    const fs::path pids = dir.path() / "pids" / "deployctl-0123abcd" / "web" / "v2.web.1";
    CHECK(text_of(memory / "memory.limit_in_bytes") == "67108864");
    CHECK_FALSE(fs::exists(memory / "memory.memsw.limit_in_bytes")); // only when the kernel has it
    CHECK(text_of(cpu / "cpu.cfs_period_us") == "100000");
    CHECK(text_of(cpu / "cpu.cfs_quota_us") == "50000");
    CHECK(text_of(pids / "pids.max") == "100");
    // A process enters every hierarchy.
    CHECK(cgroups.procs_files(name) == std::vector<fs::path>{memory / "cgroup.procs",
                                                             cpu / "cgroup.procs",
                                                             pids / "cgroup.procs"});
    put(memory / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
    CHECK(cgroups.oom_kills(name) == 3);
    CHECK(cgroups.memory_limit(name) == 64ull << 20);
    cgroups.remove(name);
    CHECK_FALSE(fs::exists(memory));
    CHECK_FALSE(fs::exists(cpu));
    CHECK_FALSE(fs::exists(pids));
}

TEST_CASE("cgroup v1: missing hierarchies are named, an empty root has none") {
    test::TempDir dir;
    put(dir.path() / "memory" / "cgroup.procs", "");
    Options options;
    options.root = dir.path();
    options.group = "deployctl-0123abcd";
    auto cgroups = Cgroups::open(options);
    CHECK(cgroups.version() == Version::v1);
    CHECK(cgroups.missing() == std::vector<std::string>{"cpu", "pids"});
    CHECK(cgroups.unsupported({1 << 20, 0, 0}, "build").empty());
    CHECK(cgroups.unsupported({0, 0.5, 3}, "run") ==
          "run.cpus needs the cpu controller, run.pids needs the pids controller");

    test::TempDir empty;
    options.root = empty.path();
    auto none = Cgroups::open(options);
    CHECK(none.version() == Version::none);
    CHECK(none.missing().size() == 3);
    CHECK(none.missing_note().find("no writable memory, cpu, pids controller under " +
                                   empty.path().string()) != std::string::npos);
}

TEST_CASE("a process enters its cgroups before it execs: the pid written is the command's") {
    test::TempDir dir;
    const fs::path procs = dir.path() / "cgroup.procs";
    const fs::path other = dir.path() / "other.procs";
    auto argv = enter_argv({procs, other}, {"/bin/sh", "-c", "echo $$ \"$0\"", "it's me"});
    CHECK(argv.front() == "/bin/sh");
    CHECK(enter_argv({}, {"x"}) == std::vector<std::string>{"x"});
    int out = ::open((dir.path() / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(out >= 0);
    agent::runtime::SpawnSpec spec;
    spec.argv = argv;
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.cwd = dir.path();
    spec.stdout_fd = out;
    auto pid = agent::runtime::spawn(spec);
    ::close(out);
    REQUIRE(pid.ok());
    int status = 0;
    REQUIRE(::waitpid(*pid, &status, 0) == *pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(text_of(procs) == std::to_string(*pid) + "\n");
    CHECK(text_of(other) == std::to_string(*pid) + "\n");
    CHECK(text_of(dir.path() / "out") == std::to_string(*pid) + " it's me\n");

    // A cgroup it cannot enter: the command never runs.
    auto blocked = enter_argv({dir.path() / "no" / "such" / "cgroup.procs"},
                              {"/bin/sh", "-c", "echo ran > ran"});
    spec.argv = blocked;
    spec.stdout_fd = -1;
    auto failed = agent::runtime::spawn(spec);
    REQUIRE(failed.ok());
    REQUIRE(::waitpid(*failed, &status, 0) == *failed);
    CHECK(WEXITSTATUS(status) == 125);
    CHECK_FALSE(fs::exists(dir.path() / "ran"));
}
