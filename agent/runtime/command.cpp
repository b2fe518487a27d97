#include <agent/runtime/command.hpp>
#include <agent/runtime/line_splitter.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace agent::runtime {

using common::ErrorKind;
using common::make_error;
using Clock = std::chrono::steady_clock;

namespace {

bool interrupted(const StreamingCommand& command, Clock::time_point deadline, Outcome& why) {
    if (command.cancel && command.cancel->load()) {
        why = Outcome::cancelled;
        return true;
    }
    if (command.timeout.count() > 0 && Clock::now() >= deadline) {
        why = Outcome::timed_out;
        return true;
    }
    return false;
}

// Reads the pipe until EOF, the deadline or cancellation.
Outcome pump(int fd, const StreamingCommand& command, Clock::time_point deadline) {
    LineSplitter lines(command.on_line);
    char buffer[8192];
    for (;;) {
        Outcome why;
        if (interrupted(command, deadline, why))
            return why;
        pollfd p{fd, POLLIN, 0};
        int ready = poll(&p, 1, 200);
        if (ready <= 0)
            continue;
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n > 0) {
            lines.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
        } else if (n == 0 || errno != EINTR) {
            lines.flush();
            return Outcome::exited;
        }
    }
}

// After EOF on the pipe: waits for the exit, still honouring deadline and cancel.
CommandResult wait_exit(pid_t pid, const StreamingCommand& command, Clock::time_point deadline) {
    for (;;) {
        int status = 0;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid && WIFSIGNALED(status))
            return {Outcome::signaled, WTERMSIG(status)};
        if (got == pid)
            return {Outcome::exited, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
        if (got < 0 && errno != EINTR)
            return {Outcome::exited, -1};
        Outcome why;
        if (interrupted(command, deadline, why)) {
            terminate_group(pid, command.kill_grace);
            return {why, 0};
        }
        usleep(20 * 1000);
    }
}

} // namespace

common::Result<CommandResult> run_streaming(const StreamingCommand& command) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return make_error(ErrorKind::io, std::string("pipe: ") + std::strerror(errno));
    SpawnSpec spec = command.spawn;
    spec.stdout_fd = fds[1];
    auto pid = spawn(spec);
    close(fds[1]);
    if (!pid) {
        close(fds[0]);
        return pid.error();
    }
    if (command.on_started)
        command.on_started(*pid);
    auto deadline = Clock::now() + command.timeout;
    Outcome outcome = pump(fds[0], command, deadline);
    close(fds[0]);
    if (outcome == Outcome::timed_out || outcome == Outcome::cancelled) {
        terminate_group(*pid, command.kill_grace);
        return CommandResult{outcome, 0};
    }
    CommandResult result = wait_exit(*pid, command, deadline);
    // Background children left in the build's process group are stopped too.
    if (result.outcome == Outcome::exited || result.outcome == Outcome::signaled)
        kill(-*pid, SIGKILL);
    return result;
}

} // namespace agent::runtime
