#include <agent/runtime/engine_cli.hpp>
#include <agent/runtime/line_splitter.hpp>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <boost/process/search_path.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <linux/close_range.h>
#include <mutex>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>

namespace agent::runtime {

namespace bp = boost::process;
using Clock = std::chrono::steady_clock;
using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::size_t k_keep_output = 64 * 1024;
// Without a pidfd: quick calls are noticed quickly; long ones (a build, `logs
// -f`) are polled less and less often. With one, the exit wakes the wait at
// once, and k_max_poll is how often a cancellation is looked at.
constexpr std::chrono::milliseconds k_first_poll{5};
constexpr std::chrono::milliseconds k_max_poll{200};

// A descriptor that becomes readable when the child `pid` exits (Linux 5.3 and
// later), or -1: an engine call of ~200 ms is then seen to end when it ends, not
// at the next step of a backing-off poll (up to 160 ms later).
int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
    (void)pid;
    return -1;
#endif
}

// Waits until the child behind `pidfd` exits or `limit` passes.
void wait_exit(int pidfd, std::chrono::milliseconds limit) {
    pollfd entry{pidfd, POLLIN, 0};
    ::poll(&entry, 1, static_cast<int>(std::max<std::int64_t>(1, limit.count())));
}

// The engine CLI gets a small, fixed environment: what it needs to find its
// daemon and its configuration, nothing of the agent's own.
bp::environment engine_environment(const std::map<std::string, std::string>& extra) {
    bp::environment env;
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    env["LANG"] = "C.UTF-8";
    for (const char* name :
         {"HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH",
          "DOCKER_TLS_VERIFY", "CONTAINER_HOST", "CONTAINERS_CONF", "XDG_RUNTIME_DIR", "TMPDIR"})
        if (const char* value = std::getenv(name))
            env[name] = value;
    if (env.find("HOME") == env.end())
        env["HOME"] = "/root";
    for (const auto& [key, value] : extra)
        env[key] = value;
    return env;
}

boost::filesystem::path resolve(const std::string& binary) {
    if (binary.find('/') != std::string::npos)
        return binary;
    return bp::search_path(binary);
}

} // namespace

std::vector<std::string> engine_environment_list(const std::map<std::string, std::string>& extra) {
    std::vector<std::string> out;
    for (const auto& entry : engine_environment(extra))
        out.push_back(entry.get_name() + "=" + entry.to_string());
    return out;
}

std::string resolve_engine_binary(const std::string& binary) {
    return resolve(binary).string();
}

std::string CliResult::last_line() const {
    auto end = output.find_last_not_of("\r\n ");
    if (end == std::string::npos)
        return {};
    auto begin = output.rfind('\n', end);
    begin = begin == std::string::npos ? 0 : begin + 1;
    return output.substr(begin, end - begin + 1);
}

std::string docker_socket_path() {
    if (const char* context = std::getenv("DOCKER_CONTEXT"); context && *context)
        return {};
    const char* host = std::getenv("DOCKER_HOST");
    if (!host || !*host)
        return "/var/run/docker.sock";
    const std::string value = host;
    const std::string scheme = "unix://";
    if (value.compare(0, scheme.size(), scheme) != 0)
        return {};
    return value.substr(scheme.size());
}

std::string describe_call(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& arg : argv) {
        if (!text.empty())
            text += ' ';
        text += arg;
    }
    return text;
}

common::Result<CliResult> run_cli(const CliCall& call) {
    if (call.argv.empty())
        return make_error(ErrorKind::internal, "run_cli: empty argv");
    auto exe = resolve(call.argv[0]);
    if (exe.empty() || ::access(exe.c_str(), X_OK) != 0)
        return make_error(ErrorKind::io, call.argv[0] + " was not found or is not executable");
    std::vector<std::string> args(call.argv.begin() + 1, call.argv.end());

    bp::ipstream out;
    std::error_code ec;
    // In the child, before exec: its own process group (a timeout or a
    // restarted agent stops it with one kill(-pgid)); killed when the agent's
    // calling thread dies (kill -9 of the agent); and none of the agent's
    // descriptors (listening sockets, database) leak into it.
    auto setup = [](auto&) {
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
            for (int fd = 3; fd < 4096; ++fd)
                ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    };
    bp::child child(exe, bp::args(args), engine_environment(call.env),
                    bp::std_in<bp::null, (bp::std_out & bp::std_err)> out, ec,
                    bp::extend::on_exec_setup = setup);
    if (ec)
        return make_error(ErrorKind::io, "cannot run " + call.argv[0] + ": " + ec.message());
    const pid_t pid = child.id();
    if (call.on_started)
        call.on_started(pid);

    CliResult result;
    std::mutex output_mutex;
    std::thread reader([&] {
        LineSplitter lines([&](std::string_view line) {
            if (call.on_line)
                call.on_line(line);
            if (!call.capture)
                return;
            std::lock_guard lock(output_mutex);
            result.output.append(line);
            result.output += '\n';
            if (result.output.size() > 2 * k_keep_output)
                result.output.erase(0, result.output.size() - k_keep_output);
        });
        // Raw reads, not std::getline: a line without end must not grow a buffer.
        char buffer[16 * 1024];
        try {
            for (;;) {
                int n = out.pipe().read(buffer, static_cast<int>(sizeof buffer));
                if (n <= 0)
                    break;
                lines.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
            }
        } catch (const std::exception&) { // a read error ends the stream like EOF
        }
        lines.flush();
    });

    const auto deadline = Clock::now() + call.timeout;
    const int pidfd = open_pidfd(pid);
    auto poll = k_first_poll;
    while (child.running(ec)) {
        bool cancelled = call.cancel && call.cancel->load();
        bool late = call.timeout.count() > 0 && Clock::now() >= deadline;
        if (cancelled || late) {
            result.cancelled = cancelled;
            result.timed_out = !cancelled;
            ::kill(-pid, SIGTERM);
            auto grace = Clock::now() + std::chrono::seconds(2);
            while (child.running(ec) && Clock::now() < grace)
                std::this_thread::sleep_for(k_first_poll);
            ::kill(-pid, SIGKILL);
            break;
        }
        if (pidfd >= 0) {
            auto limit = k_max_poll;
            if (call.timeout.count() > 0)
                limit = std::min(
                    limit, std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()));
            wait_exit(pidfd, limit);
            continue;
        }
        std::this_thread::sleep_for(poll);
        poll = std::min(poll * 2, k_max_poll);
    }
    if (pidfd >= 0)
        ::close(pidfd);
    child.wait(ec);
    reader.join(); // the end of the stream: the CLI has exited and closed its output

    result.exit_code = child.exit_code();
    if (result.output.size() > k_keep_output)
        result.output.erase(0, result.output.size() - k_keep_output);
    return result;
}

bool image_vanished_during_build(std::string_view last_line) {
    return last_line.find("unable to find image \"sha256:") != std::string_view::npos;
}

} // namespace agent::runtime
