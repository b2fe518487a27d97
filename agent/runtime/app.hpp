#pragma once
// Starting a release's app with the process engine: `/bin/sh -c run.command`
// in the release directory, in its own session (so it outlives the agent),
// with a clean environment plus [env], the agent's variables and PORT, output
// appended to a log file (through a redacting writer when the app has secrets).

#include <common/config.hpp>
#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <sys/types.h>
#include <vector>

namespace agent::runtime {

struct AppLaunch {
    std::string app;
    std::string id; // the release
    std::filesystem::path release_dir;
    std::filesystem::path log_file; // stdout+stderr, O_APPEND
    const common::AppConfig* config = nullptr;
    int port = 0; // web only: $PORT; 0 for any other process
    // Variables set on the agent (deployctl env), over config->env. Secret
    // ones reach a container through the engine CLI's environment, never
    // its argv.
    std::map<std::string, std::string> env;
    std::set<std::string> secret_names;
    // Secret values to replace by "[redacted]" in the app's output before it
    // reaches the log file (the process engine then writes the log through
    // `deploy-agent log-redact`, see log_redact.hpp).
    std::vector<std::string> redact;
    // The process engine's cgroup: the cgroup.procs files the app enters
    // before it execs (cgroup.hpp), empty for none.
    std::vector<std::filesystem::path> cgroup_procs{};
    // A process other than web ([processes]): its name, instance and
    // command; empty for the web process (run.command). "web" with an
    // instance past 1 (deployctl scale) is a web instance: run.command on `port`.
    std::string process{};
    int instance = 0;
    std::string command{};

    bool is_web() const { return process.empty() || process == "web"; }
};

struct AppProcess {
    pid_t pid = 0; // also the process group and session id
    std::int64_t start = 0;
};

common::Result<AppProcess> start_app(const AppLaunch& launch);

} // namespace agent::runtime
