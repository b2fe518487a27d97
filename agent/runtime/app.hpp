#pragma once
// Starting a release's app with the process engine: `/bin/sh -c run.command`
// in the release directory, in its own session (so it outlives the agent),
// with a clean environment plus [env] and PORT, output appended to a log file.

#include <common/config.hpp>
#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <sys/types.h>

namespace agent::runtime {

struct AppLaunch {
    std::string app;
    std::string id; // the release
    std::filesystem::path release_dir;
    std::filesystem::path log_file; // stdout+stderr, O_APPEND
    const common::AppConfig* config = nullptr;
    int port = 0;
};

struct AppProcess {
    pid_t pid = 0; // also the process group and session id
    std::int64_t start = 0;
};

common::Result<AppProcess> start_app(const AppLaunch& launch);

} // namespace agent::runtime
