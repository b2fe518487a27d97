#pragma once
// Plain processes for the `process` engine: spawning with argv vectors (never
// a shell string of ours), process groups, and pid-reuse-safe liveness checks.

#include <common/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace agent::runtime {

enum class Session { inherit, new_session };

struct SpawnSpec {
    std::vector<std::string> argv;
    std::vector<std::string> env; // "KEY=VALUE", the complete environment
    std::filesystem::path cwd;
    int stdout_fd = -1; // -1: /dev/null; stderr goes to the same place
    Session session = Session::new_session;
    // Signals blocked in the child: a blocked signal sent before the child has
    // installed its handler stays pending instead of killing it.
    std::vector<int> blocked_signals;
    // Descriptors the child inherits as fd 3, 4, ... in this order, e.g.
    // listening sockets. Every other descriptor is closed in the child.
    std::vector<int> inherit_fds;
    int stdin_fd = -1;  // -1: /dev/null
    int stderr_fd = -1; // -1: where stdout goes
    // A terminal's path (a pty's secondary side) to open as stdin, stdout and
    // stderr; with Session::new_session it becomes the controlling terminal.
    // stdout_fd, stdin_fd and stderr_fd are then ignored.
    std::filesystem::path terminal;
};

// Starts the process (posix_spawn). With Session::new_session the child leads a
// new session and process group (pgid == pid) and outlives the agent.
common::Result<pid_t> spawn(const SpawnSpec& spec);

// The environment builds and apps get: a fixed PATH, HOME, LANG, then `extra`.
std::vector<std::string> clean_environment(const std::filesystem::path& home,
                                           const std::map<std::string, std::string>& extra);

// The fields of /proc/PID/stat from field 3 (state) on ([0] state, [1] ppid,
// [11] utime, [12] stime, [19] starttime, [21] rss), for a live, non-zombie
// process; nullopt otherwise. Field 2 (comm) may hold spaces and parentheses:
// split after the last ')'.
std::optional<std::vector<std::string>> live_stat_fields(const std::string& pid);

// Field 22 of /proc/PID/stat (start time in clock ticks since boot); nullopt if
// the process does not exist or is a zombie.
std::optional<std::int64_t> process_start_time(pid_t pid);
// The process exists, is not a zombie, and started at `start` (not a reused pid).
bool process_matches(pid_t pid, std::int64_t start);
// argv[0] of a running process, from /proc/PID/cmdline.
std::optional<std::string> process_command(pid_t pid);

// waitpid(WNOHANG) on our own child: the exit status text ("status 3",
// "signal 9") once it has exited, nullopt while it runs (or if not our child).
std::optional<std::string> reap_if_exited(pid_t pid);

// SIGTERM to the process group, SIGKILL after `grace`; reaps `pgid` if it is
// our child. Returns once the group is gone (or after the SIGKILL).
void terminate_group(pid_t pgid, std::chrono::milliseconds grace);

} // namespace agent::runtime
