#pragma once
// The redacting writer between an app with secrets and its log file, for the
// process engine: `deploy-agent log-redact`. The app's stdout and stderr are a
// pipe into it; it appends the output to the log with every secret value
// replaced by "[redacted]" (secrets/redact.hpp), and exits at the pipe's end,
// i.e. when the app and its children have exited.
//
// It gets the secret values through an inherited pipe, never its argv or
// environment, and runs in its own session, detached from the agent: like the
// app, it outlives an agent restart or kill -9, so a re-adopted app's later
// output is still redacted.

#include <common/result.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace agent::runtime {

// Starts the writer appending to `log_fd` (working directory `cwd`, the log's
// folder) and returns the pipe's write end (close-on-exec) for the app's
// stdout and stderr.
common::Result<int> start_log_redactor(int log_fd, const std::filesystem::path& cwd,
                                       const std::vector<std::string>& values);

// `deploy-agent log-redact`: fd 3 is the app's output, fd 4 the secret values
// (NUL-separated, read to its end first), stdout the log file. Returns the
// exit code.
int log_redact_main();

} // namespace agent::runtime
