#include <agent/runtime/app.hpp>
#include <agent/runtime/cgroup.hpp>
#include <agent/runtime/log_redact.hpp>
#include <agent/runtime/process.hpp>
#include <common/fs.hpp>

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace agent::runtime {

using common::ErrorKind;
using common::make_error;

common::Result<AppProcess> start_app(const AppLaunch& launch) {
    const common::AppConfig& config = *launch.config;
    const std::string& command = launch.is_web() ? config.run.command : launch.command;
    if (command.empty())
        return make_error(ErrorKind::failed,
                          launch.is_web()
                              ? "deploy.toml has no run.command: the process engine needs one to "
                                "start the app (add [run] command = \"...\", or web = \"...\" "
                                "in [processes])"
                              : "processes." + launch.process + " has no command");
    std::error_code ec;
    std::filesystem::create_directories(launch.log_file.parent_path(), ec);
    int log = ::open(launch.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) // not started: an app whose output would be lost is not run
        return make_error(ErrorKind::io, "cannot open the app log " + launch.log_file.string() +
                                             ": " + common::os_error_text(errno));
    auto env = config.env;
    for (const auto& [key, value] : launch.env)
        env[key] = value;
    if (launch.is_web())
        env["PORT"] = std::to_string(launch.port);
    if (!launch.process.empty()) { // which one it is, e.g. to name a queue consumer
        env["PROCESS"] = launch.process + "." + std::to_string(launch.instance);
        env["RELEASE"] = launch.id;
    }
    // The app writes into the writer that redacts its secrets and rotates the log.
    const logs::Rotation rotation{config.logs.max_size, config.logs.keep};
    if (!launch.redact.empty() || rotation.max_size > 0) {
        auto writer = start_log_redactor(launch.log_file, launch.redact, rotation);
        ::close(log);
        if (!writer)
            return writer.error();
        log = *writer;
    }
    SpawnSpec spec;
    spec.argv = cgroup::enter_argv(launch.cgroup_procs, {"/bin/sh", "-c", command});
    spec.env = clean_environment(launch.release_dir, env);
    spec.cwd = launch.release_dir;
    spec.stdout_fd = log;
    spec.session = Session::new_session;
    auto pid = spawn(spec);
    ::close(log);
    if (!pid)
        return pid.error();
    AppProcess process{*pid, process_start_time(*pid).value_or(0)};
    return process;
}

} // namespace agent::runtime
