#include <agent/runtime/one_off.hpp>
#include <agent/runtime/process.hpp>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <thread>
#include <unistd.h>

namespace agent::runtime {

using common::ErrorKind;
using common::make_error;

namespace {

void close_fd(int& fd) {
    if (fd >= 0)
        ::close(fd);
    fd = -1;
}

void set_nonblocking(int fd) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

RunningOneOff::Exit exit_of(int status) {
    if (WIFSIGNALED(status))
        return {128 + WTERMSIG(status), WTERMSIG(status)};
    return {WEXITSTATUS(status), 0};
}

struct Pipe {
    int read = -1, write = -1;
    ~Pipe() {
        close_fd(read);
        close_fd(write);
    }
    bool open() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            return false;
        read = fds[0];
        write = fds[1];
        return true;
    }
};

common::Result<RunningOneOff> start_on_terminal(const OneOffPlan& plan, const OneOffIo& io) {
    RunningOneOff running;
    running.tty = true;
    const int primary = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (primary < 0)
        return make_error(ErrorKind::io,
                          std::string("cannot open a pseudo-terminal: ") + std::strerror(errno));
    running.input = primary;
    char name[128];
    if (::grantpt(primary) != 0 || ::unlockpt(primary) != 0 ||
        ::ptsname_r(primary, name, sizeof name) != 0)
        return make_error(ErrorKind::io,
                          std::string("cannot set up a pseudo-terminal: ") + std::strerror(errno));
    if (plan.raw_terminal) {
        termios mode{};
        if (::tcgetattr(primary, &mode) == 0) {
            ::cfmakeraw(&mode);
            ::tcsetattr(primary, TCSANOW, &mode);
        }
    }
    winsize size{};
    size.ws_col = static_cast<unsigned short>(io.cols ? io.cols : 80);
    size.ws_row = static_cast<unsigned short>(io.rows ? io.rows : 24);
    ::ioctl(primary, TIOCSWINSZ, &size);
    auto spec = plan.spawn;
    spec.session = Session::new_session;
    spec.terminal = name;
    auto pid = spawn(spec);
    if (!pid)
        return pid.error();
    running.pid = *pid;
    running.output = ::dup(primary);
    if (running.output < 0) {
        running.end(std::chrono::milliseconds(0));
        return make_error(ErrorKind::io, std::string("dup: ") + std::strerror(errno));
    }
    ::fcntl(running.output, F_SETFD, FD_CLOEXEC);
    set_nonblocking(primary);
    return running;
}

common::Result<RunningOneOff> start_on_pipes(const OneOffPlan& plan, const OneOffIo& io) {
    Pipe in, out, err;
    if ((io.stdin_open && !in.open()) || !out.open() || !err.open())
        return make_error(ErrorKind::io, std::string("cannot make pipes: ") + std::strerror(errno));
    auto spec = plan.spawn;
    spec.session = Session::new_session;
    spec.stdin_fd = in.read;
    spec.stdout_fd = out.write;
    spec.stderr_fd = err.write;
    auto pid = spawn(spec);
    if (!pid)
        return pid.error();
    RunningOneOff running;
    running.pid = *pid;
    std::swap(running.input, in.write);
    std::swap(running.output, out.read);
    std::swap(running.error, err.read);
    for (int fd : {running.input, running.output, running.error})
        if (fd >= 0)
            set_nonblocking(fd);
    return running;
}

} // namespace

RunningOneOff::RunningOneOff(RunningOneOff&& other) noexcept
    : pid(other.pid), input(other.input), output(other.output), error(other.error),
      exited(other.exited), tty(other.tty), m_exit(other.m_exit) {
    other.pid = 0;
    other.input = other.output = other.error = other.exited = -1;
}

RunningOneOff::~RunningOneOff() {
    if (pid > 0 && !m_exit)
        end(std::chrono::milliseconds(2000));
    close_fd(input);
    close_fd(output);
    close_fd(error);
    close_fd(exited);
}

std::optional<RunningOneOff::Exit> RunningOneOff::poll_exit() {
    if (m_exit || pid <= 0)
        return m_exit;
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
        m_exit = exit_of(status);
        ::kill(-pid, SIGKILL); // what it left running in its group
    } else if (done < 0 && errno == ECHILD) {
        m_exit = Exit{1, 0};
    }
    return m_exit;
}

void RunningOneOff::signal_group(int signal) const {
    if (pid > 0 && !m_exit)
        ::kill(-pid, signal);
}

void RunningOneOff::resize(unsigned cols, unsigned rows) const {
    if (!tty || input < 0)
        return;
    winsize size{};
    size.ws_col = static_cast<unsigned short>(cols);
    size.ws_row = static_cast<unsigned short>(rows);
    ::ioctl(input, TIOCSWINSZ, &size);
}

RunningOneOff::Exit RunningOneOff::end(std::chrono::milliseconds grace) {
    if (auto done = poll_exit())
        return *done;
    ::kill(-pid, tty ? SIGHUP : SIGTERM);
    if (!tty)
        ::kill(-pid, SIGCONT);
    const auto until = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < until) {
        if (auto done = poll_exit())
            return *done;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(-pid, SIGKILL);
    int status = 0;
    if (::waitpid(pid, &status, 0) == pid)
        m_exit = exit_of(status);
    else
        m_exit = Exit{128 + SIGKILL, SIGKILL};
    return *m_exit;
}

void RunningOneOff::close_input() {
    if (!tty)
        close_fd(input);
}

common::Result<RunningOneOff> start_one_off(const OneOffPlan& plan, const OneOffIo& io) {
    auto running = io.tty ? start_on_terminal(plan, io) : start_on_pipes(plan, io);
    if (running) // our child, not yet reaped: the pid cannot have been reused
        running->exited = static_cast<int>(::syscall(SYS_pidfd_open, running->pid, 0));
    return running;
}

} // namespace agent::runtime
