#pragma once
// Starting a one-off command (Runtime::one_off's plan) with its input and
// output connected to the agent: pipes (stdin, stdout and stderr apart), or a
// pseudo-terminal for an interactive session. Either way it leads a session
// and process group of its own, so that ending it ends everything it started.

#include <agent/runtime/runtime.hpp>
#include <common/result.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace agent::runtime {

struct OneOffIo {
    bool tty = false;
    bool stdin_open = false; // else stdin is /dev/null (pipes) or nobody types (tty)
    unsigned cols = 80, rows = 24;
};

// A started one-off. The descriptors are the agent's ends, non-blocking and
// close-on-exec; with a terminal `input` and `output` are the same pty.
class RunningOneOff {
  public:
    RunningOneOff() = default;
    RunningOneOff(RunningOneOff&& other) noexcept;
    RunningOneOff& operator=(RunningOneOff&&) = delete;
    ~RunningOneOff(); // closes the descriptors; ends the process group if it still runs

    pid_t pid = 0; // leads its process group
    int input = -1;
    int output = -1;
    int error = -1; // -1 with a terminal
    int exited = -1; // a pidfd, readable once the process has exited (-1 if the kernel has none)
    bool tty = false;

    // waitpid(WNOHANG): the exit status once it has exited (then the group's
    // leftovers are killed), nullopt while it runs.
    struct Exit {
        int status = 0; // as a shell reports it: the exit code, or 128 + the signal
        int signal = 0;
    };
    std::optional<Exit> poll_exit();
    // Sends `signal` to the process group.
    void signal_group(int signal) const;
    // The terminal's size (TIOCSWINSZ: the command gets SIGWINCH).
    void resize(unsigned cols, unsigned rows) const;
    // SIGHUP (terminal) or SIGTERM to the group, SIGKILL after `grace`; reaps.
    Exit end(std::chrono::milliseconds grace);
    // Closes `input` (the command reads end of file).
    void close_input();

  private:
    std::optional<Exit> m_exit;
};

// Spawns the plan. ErrorKind::io when the process cannot be started at all.
common::Result<RunningOneOff> start_one_off(const OneOffPlan& plan, const OneOffIo& io);

} // namespace agent::runtime
