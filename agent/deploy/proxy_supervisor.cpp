#include <agent/deploy/proxy_supervisor.hpp>
#include <agent/deploy/routes.hpp>
#include <agent/runtime/process.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <signal.h>
#include <thread>
#include <unistd.h>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

ProxySupervisor::ProxySupervisor(DataDir data_dir, std::string proxy_bin, std::string listen)
    : m_data_dir(std::move(data_dir)), m_bin(std::move(proxy_bin)), m_listen(std::move(listen)) {}

bool ProxySupervisor::alive_locked() const {
    if (m_pid <= 0)
        return false;
    runtime::reap_if_exited(m_pid);
    return runtime::process_matches(m_pid, m_start);
}

bool ProxySupervisor::adopt_locked() {
    auto text = common::read_file(m_data_dir.proxy_pid());
    if (!text)
        return false;
    pid_t pid = 0;
    try {
        pid = static_cast<pid_t>(std::stol(*text));
    } catch (const std::exception& e) {
        common::log_warn("ignoring unreadable " + m_data_dir.proxy_pid().string() + ": " +
                         e.what());
        return false;
    }
    auto start = runtime::process_start_time(pid);
    auto command = runtime::process_command(pid);
    if (!start || !command || fs::path(*command).filename() != "deploy-proxy")
        return false;
    m_pid = pid;
    m_start = *start;
    common::log_info("adopted running deploy-proxy (pid " + std::to_string(pid) + ")");
    return true;
}

common::Status ProxySupervisor::spawn_locked() {
    std::error_code ec;
    fs::create_directories(m_data_dir.proxy_dir(), ec);
    int log =
        ::open(m_data_dir.proxy_log().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0)
        return make_error(ErrorKind::io, "cannot open " + m_data_dir.proxy_log().string() + ": " +
                                             std::strerror(errno));
    runtime::SpawnSpec spec;
    spec.argv = {m_bin,
                 "--listen",
                 m_listen,
                 "--routes",
                 m_data_dir.proxy_routes().string(),
                 "--applied",
                 m_data_dir.proxy_applied().string()};
    spec.env = runtime::clean_environment(m_data_dir.proxy_dir(), {});
    spec.cwd = m_data_dir.proxy_dir();
    spec.stdout_fd = log;
    spec.blocked_signals = {SIGHUP}; // reload() may signal before the proxy's handler exists
    auto pid = runtime::spawn(spec);
    ::close(log);
    if (!pid)
        return pid.error();
    m_pid = *pid;
    m_start = runtime::process_start_time(*pid).value_or(0);
    common::log_info("started deploy-proxy on " + m_listen + " (pid " + std::to_string(*pid) + ")");
    return common::atomic_write_file(m_data_dir.proxy_pid(), std::to_string(*pid) + "\n");
}

common::Status ProxySupervisor::ensure_running() {
    if (!enabled())
        return {};
    std::lock_guard lock(m_mutex);
    if (alive_locked() || adopt_locked())
        return {};
    auto now = std::chrono::steady_clock::now();
    if (m_pid > 0 && now - m_last_spawn < std::chrono::seconds(2))
        return {}; // crash loop
    m_last_spawn = now;
    if (m_pid > 0)
        common::log_warn("deploy-proxy (pid " + std::to_string(m_pid) + ") is gone");
    return spawn_locked();
}

void ProxySupervisor::reload() {
    std::lock_guard lock(m_mutex);
    if (alive_locked() && ::kill(m_pid, SIGHUP) != 0)
        common::log_warn("cannot signal deploy-proxy: " + std::string(std::strerror(errno)));
}

bool ProxySupervisor::wait_applied(std::uint64_t generation,
                                   std::chrono::milliseconds timeout) const {
    if (!enabled())
        return true;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (read_generation(m_data_dir.proxy_applied()) < generation) {
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

} // namespace agent
