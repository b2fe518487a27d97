#pragma once
// Runs a command to completion in its own process group, streaming each line
// of its stdout+stderr as it arrives; used for build commands.

#include <agent/runtime/process.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <string_view>

namespace agent::runtime {

enum class Outcome { exited, signaled, timed_out, cancelled };

struct CommandResult {
    Outcome outcome = Outcome::exited;
    int status = 0; // exit status, or the signal number
};

struct StreamingCommand {
    SpawnSpec spawn;                      // stdout_fd is ignored: output goes through a pipe
    std::chrono::milliseconds timeout{0}; // 0 = none
    std::function<void(std::string_view line)> on_line;
    std::function<void(pid_t pid)> on_started; // e.g. record the pid for recovery
    const std::atomic<bool>* cancel = nullptr;
    std::chrono::milliseconds kill_grace{2000}; // SIGTERM -> SIGKILL
};

common::Result<CommandResult> run_streaming(const StreamingCommand& command);

} // namespace agent::runtime
