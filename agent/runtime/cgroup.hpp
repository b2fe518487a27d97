#pragma once
// Resource limits of the process engine through cgroups (docs/design.md §2):
// one cgroup per app process, build and one-off, created and removed by the
// agent, on cgroup v2 (one unified hierarchy) or v1 (a hierarchy per
// controller: memory, cpu, pids), as runc and systemd use them.
//
// Every cgroup of an agent lives under a group of its own ("deployctl-ID",
// ID the agent's id): on v1 at the top of each controller's hierarchy, on v2
// beside the agent's own cgroup, whose processes the agent first moves into a
// leaf ("deploy-agent") so that controllers can be enabled for the children
// (the no-internal-processes rule). A process enters its cgroups before it
// execs (`enter_argv`), so no part of it runs outside them.

#include <common/config.hpp>
#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agent::runtime::cgroup {

struct Limits {
    std::uint64_t memory = 0; // bytes, 0 = none
    double cpus = 0;          // cores, 0 = none
    std::int64_t pids = 0;    // 0 = none
    bool any() const { return memory > 0 || cpus > 0 || pids > 0; }
};

// [run] memory, cpus and pids: apps and one-offs. [build] memory: builds.
Limits run_limits(const common::AppConfig& config);
Limits build_limits(const common::AppConfig& config);

// The cgroup of one process of a release, relative to the agent's group:
// "APP/RELEASE.PROCESS.INSTANCE" (the app's process is "web", instance 1, 2 ...
// while an old and a new one of a release run at once; a build
// "APP/RELEASE.build"; a one-off "APP/RELEASE.run-RANDOM").
std::string cgroup_name(const std::string& app, const std::string& release,
                        const std::string& process, const std::string& instance);

// "oom_kill N" in v2 memory.events or v1 memory.oom_control: N, 0 without the line.
std::uint64_t parse_oom_kills(std::string_view text);
// v2 cpu.max "QUOTA PERIOD" for `cpus` cores ("50000 100000" for 0.5).
std::string cpu_max(double cpus);
// The v2 cgroup of a process from the text of /proc/PID/cgroup ("0::/a/b" -> "a/b").
std::optional<std::string> v2_self_path(std::string_view proc_cgroup);

enum class Version { none, v1, v2 };

struct Options {
    std::filesystem::path root = "/sys/fs/cgroup";
    std::string group; // "deployctl-" + the agent's id
    // v2: the agent's own cgroup relative to root; nullopt = read /proc/self/cgroup.
    std::optional<std::string> self;
};

class Cgroups {
  public:
    // Finds the hierarchy with writable memory, cpu and pids controllers
    // under options.root. Never fails: what it cannot use is in missing(). On
    // v2 the first create() moves the agent (and whatever shares its cgroup)
    // into its leaf and enables the controllers for its children.
    static Cgroups open(Options options);
    // No controller at all (tests, an agent without cgroups).
    Cgroups() = default;

    Version version() const { return m_version; }
    // Controllers that cannot be used: of "memory", "cpu", "pids".
    const std::vector<std::string>& missing() const { return m_missing; }
    // Why the limits cannot be applied ("run.memory needs the memory controller"),
    // empty when they can. `what` prefixes the keys: "run" or "build".
    std::string unsupported(const Limits& limits, const std::string& what) const;
    // One line for the agent's log naming what is missing (empty if nothing).
    std::string missing_note() const;

    // Creates the cgroup `name` with `limits` (an empty one of that name is
    // removed first, so its counters start at zero), in every controller
    // there is (a v1 process enters each hierarchy).
    common::Status create(const std::string& name, const Limits& limits) const;
    // The cgroup.procs files a process writes its pid to, to enter `name`.
    std::vector<std::filesystem::path> procs_files(const std::string& name) const;
    // The directory of `name` in each hierarchy it exists in.
    std::vector<std::filesystem::path> dirs(const std::string& name) const;
    bool exists(const std::string& name) const;
    // The pids in `name` (all hierarchies, no duplicates).
    std::vector<int> pids(const std::string& name) const;
    // Processes the kernel killed for memory in `name` since it was created.
    std::uint64_t oom_kills(const std::string& name) const;
    // Its memory limit in bytes, 0 for none.
    std::uint64_t memory_limit(const std::string& name) const;
    // Kills what still runs in `name`, then removes it (and its app's folder
    // when that is left empty).
    void remove(const std::string& name) const;
    // The names of the cgroups under `dir` ("APP" or "" for the apps).
    std::vector<std::string> children(const std::string& dir) const;
    // The cgroup a running process is in, relative to the agent's group;
    // nullopt when it is in none of ours.
    std::optional<std::string> of_process(int pid) const;

    // The group's folder in the hierarchy of `controller` ("memory", "cpu",
    // "pids"), empty when that controller is missing.
    std::filesystem::path base(const std::string& controller) const;

  private:
    struct V2Setup {
        std::mutex mutex;
        bool done = false;
        std::filesystem::path base; // the agent's own cgroup
        bool move = false;          // not when that is the root
        std::vector<std::string> controllers;
        common::Status outcome;
    };
    common::Status prepare_v2() const;

    std::shared_ptr<V2Setup> m_v2; // v2 only
    Version m_version = Version::none;
    std::filesystem::path m_memory, m_cpu, m_pids; // the group's folder per controller
    std::vector<std::string> m_missing{"memory", "cpu", "pids"};
    std::filesystem::path m_root;
};

// argv that puts the new process into the cgroups (the cgroup.procs files)
// before it execs `argv`: `/bin/sh -c SCRIPT sh FILE... -- ARGV...` (the files
// are arguments, never part of the script). `argv` unchanged when `procs` is empty.
std::vector<std::string> enter_argv(const std::vector<std::filesystem::path>& procs,
                                    std::vector<std::string> argv);

} // namespace agent::runtime::cgroup
