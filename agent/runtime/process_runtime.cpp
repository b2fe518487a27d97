// The `process` runtime: build commands and apps as plain child processes in
// the release directory.
#include <agent/runtime/cgroup.hpp>
#include <agent/runtime/command.hpp>
#include <agent/runtime/process.hpp>
#include <agent/runtime/runtime.hpp>
#include <common/duration.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <random>

namespace agent::runtime {

using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::chrono::milliseconds k_build_kill_grace{2000};

std::string random_hex() {
    std::random_device random;
    return fmt::format("{:08x}", random());
}

bool starts_with(const std::string& text, const std::string& prefix) {
    return text.rfind(prefix, 0) == 0;
}

class ProcessRuntime final : public Runtime {
  public:
    explicit ProcessRuntime(std::shared_ptr<const cgroup::Cgroups> cgroups)
        : m_cgroups(cgroups ? std::move(cgroups) : std::make_shared<cgroup::Cgroups>()) {}

    std::string name() const override { return "process"; }

    // `sh -c 'exec "$@"'` looks argv[0] up on the command's own PATH and
    // answers as a shell does: 127 not found, 126 not executable.
    common::Result<OneOffPlan> one_off(const OneOffSpec& spec) override {
        OneOffPlan plan;
        plan.spawn.argv = {"/bin/sh", "-c", "exec \"$@\"", "sh"};
        plan.spawn.argv.insert(plan.spawn.argv.end(), spec.argv.begin(), spec.argv.end());
        auto env = spec.config->env;
        for (const auto& [key, value] : spec.env)
            env[key] = value;
        env["RELEASE"] = spec.release.id;
        if (spec.tty)
            env["TERM"] = spec.term.empty() ? "xterm" : spec.term;
        plan.spawn.env = clean_environment(spec.release_dir, env);
        plan.spawn.cwd = spec.release_dir;
        const auto limits = cgroup::run_limits(*spec.config);
        if (limits.any()) { // in a cgroup of its own with the app's limits
            const auto group = cgroup::cgroup_name(spec.release.app, spec.release.id,
                                                   spec.purpose + "-" + random_hex(), "");
            TRY(make_group(group, limits, "run"));
            plan.spawn.argv = cgroup::enter_argv(m_cgroups->procs_files(group), plan.spawn.argv);
            plan.cleanup = [cgroups = m_cgroups, group] { cgroups->remove(group); };
        }
        return plan;
    }

    common::Status build(const BuildSpec& spec) override {
        const auto& build = spec.config->build;
        if (!build.dockerfile.empty())
            return make_error(ErrorKind::failed,
                              "build.dockerfile is set but this agent has no container engine "
                              "(--engine process)");
        if (build.command.empty())
            return {};
        spec.on_note("running build command: " + build.command);
        StreamingCommand command;
        command.spawn.argv = {"/bin/sh", "-c", build.command};
        auto env = spec.config->env;
        for (const auto& [key, value] : spec.env)
            env[key] = value;
        if (!spec.cache_dir.empty())
            env["CACHE_DIR"] = spec.cache_dir.string();
        command.spawn.env = clean_environment(spec.release_dir, env);
        command.spawn.cwd = spec.release_dir;
        command.timeout = build.timeout;
        command.kill_grace = k_build_kill_grace;
        command.cancel = spec.cancel;
        command.on_line = spec.on_line;
        command.on_started = spec.on_started;
        const auto limits = cgroup::build_limits(*spec.config);
        std::string group;
        if (limits.any()) {
            group = cgroup::cgroup_name(spec.release.app, spec.release.id, "build", "");
            if (auto made = make_group(group, limits, "build"); !made)
                return make_error(ErrorKind::failed, "build failed: " + made.error().message);
            command.spawn.argv =
                cgroup::enter_argv(m_cgroups->procs_files(group), command.spawn.argv);
        }
        auto result = run_streaming(command);
        std::uint64_t oom_kills = 0;
        if (!group.empty()) {
            oom_kills = m_cgroups->oom_kills(group);
            m_cgroups->remove(group); // what the build left running ends with it
        }
        if (result && oom_kills > 0 &&
            (result->outcome == Outcome::signaled || result->status != 0))
            return make_error(ErrorKind::failed,
                              "build exceeded memory limit " + common::format_size(limits.memory));
        if (!result)
            return make_error(ErrorKind::failed, "build failed: " + result.error().message);
        switch (result->outcome) {
        case Outcome::timed_out:
            return make_error(ErrorKind::failed,
                              "build timed out after " + common::format_duration(build.timeout));
        case Outcome::cancelled:
            return make_error(ErrorKind::failed, "interrupted: the agent stopped during the build");
        case Outcome::signaled:
            return make_error(ErrorKind::failed, "build failed: command killed by signal " +
                                                     std::to_string(result->status));
        case Outcome::exited:
            break;
        }
        if (result->status != 0)
            return make_error(ErrorKind::failed, "build failed: command exited with status " +
                                                     std::to_string(result->status));
        return {};
    }

    // With [run] limits the app runs in a cgroup of its own, "RELEASE.web.N"
    // ("RELEASE.worker.N" for a process other than web): the first N that
    // nothing runs in (a restart starts a second process of the release
    // before it stops the first).
    common::Result<AppProcess> start(const AppLaunch& launch) override {
        const auto limits = cgroup::run_limits(*launch.config);
        if (!limits.any())
            return start_app(launch);
        const std::string kind = launch.process.empty() ? "web" : launch.process;
        std::string group;
        for (int instance = 1;; ++instance) {
            group = cgroup::cgroup_name(launch.app, launch.id, kind, std::to_string(instance));
            if (!m_cgroups->exists(group) || m_cgroups->pids(group).empty())
                break;
        }
        TRY(make_group(group, limits, "run"));
        AppLaunch in_group = launch;
        in_group.cgroup_procs = m_cgroups->procs_files(group);
        auto process = start_app(in_group);
        if (!process)
            m_cgroups->remove(group);
        return process;
    }

    std::optional<std::string> exited(const ReleaseRef& release,
                                      const AppProcess& process) override {
        auto why = exit_reason(process);
        if (!why)
            return std::nullopt;
        if (auto memory = killed_for_memory(release))
            return *memory + " while starting";
        return why;
    }

    // The supervisor found the PRODUCTION app gone: say so when the kernel
    // killed it for memory; the agent starts it again.
    Recovery recover(const ReleaseRef& release, const std::filesystem::path&) override {
        Recovery recovery;
        if (auto memory = killed_for_memory(release))
            recovery.note = *memory;
        return recovery;
    }

    std::size_t remove_leftover_groups() override {
        std::size_t removed = 0;
        for (const auto& app : m_cgroups->children(""))
            for (const auto& child : m_cgroups->children(app)) {
                const std::string group = app + "/" + child;
                if (!m_cgroups->pids(group).empty())
                    continue;
                m_cgroups->remove(group);
                ++removed;
            }
        return removed;
    }

    void remove(const ReleaseRef& release) override {
        for (const auto& child : m_cgroups->children(release.app))
            if (starts_with(child, release.id + "."))
                m_cgroups->remove(release.app + "/" + child);
    }

    bool alive(const AppProcess& process) const override {
        return process.pid > 0 && process_matches(process.pid, process.start);
    }

    // Then removes the release's app cgroups that nothing runs in any more
    // (the stopped process's, and one a crashed start left).
    void stop(const ReleaseRef& release, const AppProcess& process,
              std::chrono::milliseconds grace) override {
        std::optional<std::string> group;
        if (alive(process)) {
            group = m_cgroups->of_process(process.pid);
            terminate_group(process.pid, grace);
        } else if (process.pid > 0) {
            reap_if_exited(process.pid);
        }
        if (group)
            m_cgroups->remove(*group); // leftovers that left the process group too
        for (const auto& child : m_cgroups->children(release.app)) {
            const std::string name = release.app + "/" + child;
            if (starts_with(child, group_prefix(release)) && m_cgroups->pids(name).empty())
                m_cgroups->remove(name);
        }
    }

  private:
    std::shared_ptr<const cgroup::Cgroups> m_cgroups;

    // "v3.web." or "v3.worker.": the release process's cgroups start so.
    static std::string group_prefix(const ReleaseRef& release) {
        return release.id + "." + (release.process.empty() ? "web" : release.process) + ".";
    }

    common::Status make_group(const std::string& group, const cgroup::Limits& limits,
                              const std::string& what) const {
        if (auto why = m_cgroups->unsupported(limits, what); !why.empty())
            return make_error(ErrorKind::config, "cannot apply the limits of deploy.toml: " + why +
                                                     " (no writable cgroup controller)");
        return m_cgroups->create(group, limits);
    }

    static std::optional<std::string> exit_reason(const AppProcess& process) {
        if (auto status = reap_if_exited(process.pid))
            return "app exited with " + *status + " while starting";
        if (process_matches(process.pid, process.start))
            return std::nullopt;
        // It exited since the first look (a zombie does not match): its status now.
        if (auto status = reap_if_exited(process.pid))
            return "app exited with " + *status + " while starting";
        return std::string("app exited while starting");
    }

    // "app exceeded memory limit 64m" when an app cgroup of the release that
    // nothing runs in any more saw the kernel kill a process for memory.
    std::optional<std::string> killed_for_memory(const ReleaseRef& release) const {
        for (const auto& child : m_cgroups->children(release.app)) {
            const std::string name = release.app + "/" + child;
            if (!starts_with(child, group_prefix(release)) || !m_cgroups->pids(name).empty())
                continue;
            if (m_cgroups->oom_kills(name) > 0) {
                const auto limit = m_cgroups->memory_limit(name);
                return "app exceeded memory limit " +
                       (limit ? common::format_size(limit) : std::string("(none)"));
            }
        }
        return std::nullopt;
    }
};

} // namespace

std::unique_ptr<Runtime> make_process_runtime(std::shared_ptr<const cgroup::Cgroups> cgroups) {
    return std::make_unique<ProcessRuntime>(std::move(cgroups));
}

} // namespace agent::runtime
