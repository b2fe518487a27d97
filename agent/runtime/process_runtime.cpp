// The `process` runtime: build commands and apps as plain child processes in
// the release directory.
#include <agent/runtime/command.hpp>
#include <agent/runtime/process.hpp>
#include <agent/runtime/runtime.hpp>
#include <common/duration.hpp>

namespace agent::runtime {

using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::chrono::milliseconds k_build_kill_grace{2000};

class ProcessRuntime final : public Runtime {
  public:
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
        command.spawn.env = clean_environment(spec.release_dir, env);
        command.spawn.cwd = spec.release_dir;
        command.timeout = build.timeout;
        command.kill_grace = k_build_kill_grace;
        command.cancel = spec.cancel;
        command.on_line = spec.on_line;
        command.on_started = spec.on_started;
        auto result = run_streaming(command);
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

    common::Result<AppProcess> start(const AppLaunch& launch) override { return start_app(launch); }

    std::optional<std::string> exited(const ReleaseRef&, const AppProcess& process) override {
        if (auto status = reap_if_exited(process.pid))
            return "app exited with " + *status + " while starting";
        if (process_matches(process.pid, process.start))
            return std::nullopt;
        // It exited since the first look (a zombie does not match): its status now.
        if (auto status = reap_if_exited(process.pid))
            return "app exited with " + *status + " while starting";
        return std::string("app exited while starting");
    }

    bool alive(const AppProcess& process) const override {
        return process.pid > 0 && process_matches(process.pid, process.start);
    }

    void stop(const ReleaseRef&, const AppProcess& process,
              std::chrono::milliseconds grace) override {
        if (alive(process))
            terminate_group(process.pid, grace);
        else if (process.pid > 0)
            reap_if_exited(process.pid);
    }
};

} // namespace

std::unique_ptr<Runtime> make_process_runtime() {
    return std::make_unique<ProcessRuntime>();
}

} // namespace agent::runtime
