#pragma once
// The writer between an app and its log file, for the process engine:
// `deploy-agent log-redact`. The app's stdout and stderr are a pipe into it; it
// appends the output to the log with every secret value replaced by
// "[redacted]" (secrets/redact.hpp), rotates the log by size (deploy.toml
// [logs], logs/rotating_file.hpp), and exits at the pipe's end, i.e. when the
// app and its children have exited.
//
// It gets the secret values through an inherited pipe, never its argv or
// environment, and runs in its own session, detached from the agent: like the
// app, it outlives an agent restart or kill -9, so a re-adopted app's later
// output is still redacted.

#include <agent/logs/rotating_file.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace agent::runtime {

// Starts the writer appending to `log` (which the caller could open), rotated
// as `rotation` says, and returns the pipe's write end (close-on-exec) for the
// app's stdout and stderr.
common::Result<int> start_log_redactor(const std::filesystem::path& log,
                                       const std::vector<std::string>& values,
                                       logs::Rotation rotation);

struct LogWriterOptions {
    std::string file; // the log; without it, stdout
    std::uint64_t max_size = 0;
    int keep = 5;
};

// `deploy-agent log-redact [--file LOG --max-size N --keep K]`: fd 3 is the
// app's output, fd 4 the secret values (NUL-separated, read to its end
// first). Returns the exit code.
int log_redact_main(const LogWriterOptions& options);

} // namespace agent::runtime
