#include <agent/deploy/proxy_supervisor.hpp>
#include <agent/runtime/http_probe.hpp>
#include <agent/runtime/process.hpp>
#include <common/address.hpp>
#include <common/fs.hpp>
#include <common/hash.hpp>
#include <common/log.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

ProxySupervisor::ProxySupervisor(DataDir data_dir, std::string proxy_bin, ProxySettings settings)
    : m_data_dir(std::move(data_dir)), m_bin(std::move(proxy_bin)),
      m_settings(std::move(settings)), m_http{m_settings.listen, 3,
                                              "--proxy-listen or [proxy] listen in agent.toml"},
      m_https{m_settings.https() ? m_settings.https_listen : std::string(), 4,
              "[proxy] https_listen in agent.toml"} {}

ProxySupervisor::~ProxySupervisor() {
    for (const auto* socket : {&m_http, &m_https})
        if (socket->fd >= 0)
            ::close(socket->fd);
}

namespace {

// The port a listening TCP socket is bound to, 0 if `fd` is not one.
std::uint16_t listening_port(int fd) {
    int listening = 0;
    socklen_t size = sizeof listening;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
        return 0;
    if (address.ss_family == AF_INET)
        return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
    if (address.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
    return 0;
}

// A listening socket on `listen` (HOST:PORT), close-on-exec, or why there is
// none; with `setting` (where the address comes from), what to do about it.
common::Result<int> make_listening_socket(const std::string& listen, std::string_view setting) {
    auto address = common::parse_host_port(listen, common::EmptyHost::allowed);
    if (!address)
        return address.error();
    sockaddr_storage storage{};
    socklen_t length = 0;
    const auto bad_address = [&listen] {
        return make_error(ErrorKind::usage, "invalid address for deploy-proxy: " + listen);
    };
    if (address->host.find(':') != std::string::npos) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(&storage);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(address->port);
        if (::inet_pton(AF_INET6, address->host.c_str(), &a6->sin6_addr) != 1)
            return bad_address();
        length = sizeof *a6;
    } else {
        auto* a4 = reinterpret_cast<sockaddr_in*>(&storage);
        a4->sin_family = AF_INET;
        a4->sin_port = htons(address->port);
        if (address->host.empty())
            a4->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (::inet_pton(AF_INET, address->host.c_str(), &a4->sin_addr) != 1)
            return bad_address();
        length = sizeof *a4;
    }
    int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return make_error(ErrorKind::io, "cannot create a socket for deploy-proxy on " + listen +
                                             ": " + std::strerror(errno));
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0 || ::listen(fd, 4096) != 0) {
        const int error = errno;
        ::close(fd);
        return make_error(ErrorKind::io,
                          "cannot listen on " + listen + " for deploy-proxy: " +
                              (setting.empty() ? std::string(std::strerror(error))
                                               : common::listen_failure(error, setting)));
    }
    return fd;
}

} // namespace

common::Status ProxySupervisor::take_socket(HeldSocket& socket, pid_t adopted,
                                            BindFailure bind_failure) {
    if (socket.fd >= 0 || socket.listen.empty())
        return {};
    if (adopted <= 0) {
        auto fd = make_listening_socket(socket.listen,
                                        bind_failure == BindFailure::fatal ? socket.setting : "");
        if (!fd)
            return fd.error();
        socket.fd = *fd;
        return {};
    }
    // The adopted proxy serves on fd 3 (and 4) when an agent handed it its sockets.
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, adopted, 0));
    if (pidfd < 0)
        return {};
    int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, socket.child_fd, 0)); // cloexec
    ::close(pidfd);
    auto wanted = common::parse_host_port(socket.listen, common::EmptyHost::allowed);
    if (fd >= 0 && wanted && listening_port(fd) == wanted->port) {
        socket.fd = fd;
        common::log_info("holding deploy-proxy's listening socket on " + socket.listen +
                         " for its restarts");
    } else if (fd >= 0) {
        ::close(fd);
    }
    return {};
}

std::vector<std::string> ProxySupervisor::settings_argv() const {
    std::vector<std::string> argv = {m_bin,
                                     "--listen",
                                     m_settings.listen,
                                     "--routes",
                                     m_data_dir.proxy_routes().string(),
                                     "--applied",
                                     m_data_dir.proxy_applied().string(),
                                     "--probe-key",
                                     m_data_dir.proxy_probe_key().string(),
                                     "--threads",
                                     std::to_string(std::max(m_settings.threads, 1u))};
    if (m_settings.access_log)
        argv.insert(argv.end(),
                    {"--access-log-dir", (m_data_dir.root() / "apps").string(),
                     "--access-log-max-size", std::to_string(m_settings.access_log_max_size)});
    if (m_settings.https()) {
        argv.insert(argv.end(), {"--tls-listen", m_settings.https_listen});
        for (const auto& files : m_settings.certificates)
            argv.insert(argv.end(), {"--tls-cert", files.cert, "--tls-key", files.key});
        if (m_settings.acme.enabled)
            argv.insert(argv.end(), {"--acme-dir", (m_data_dir.root() / "acme").string()});
        if (m_settings.acme.enabled && m_settings.acme.on_demand)
            argv.emplace_back("--on-demand-tls");
        if (m_settings.redirect_https)
            argv.emplace_back("--redirect-https");
    }
    return argv;
}

bool ProxySupervisor::alive_locked() const {
    if (m_pid <= 0)
        return false;
    runtime::reap_if_exited(m_pid);
    return runtime::process_matches(m_pid, m_start);
}

namespace {

// The whole command line of `pid`, without the inherited descriptors' flags.
std::vector<std::string> command_line_settings(pid_t pid) {
    std::vector<std::string> out;
    auto text = common::read_file("/proc/" + std::to_string(pid) + "/cmdline");
    if (!text)
        return out;
    std::size_t start = 0;
    while (start < text->size()) {
        auto end = text->find('\0', start);
        if (end == std::string::npos)
            end = text->size();
        out.push_back(text->substr(start, end - start));
        start = end + 1;
    }
    for (auto it = out.begin(); it != out.end();) {
        if ((*it == "--listen-fd" || *it == "--tls-listen-fd") && it + 1 != out.end())
            it = out.erase(it, it + 2);
        else
            ++it;
    }
    return out;
}

} // namespace

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
    (void)take_socket(m_http, pid, BindFailure::warn); // never fails for an adopted proxy
    (void)take_socket(m_https, pid, BindFailure::warn);
    auto running = command_line_settings(pid);
    // A binary replaced on disk (an upgrade) shows as "PATH (deleted)".
    std::error_code ec;
    const auto exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec).string();
    const bool upgraded = !ec && exe.ends_with(" (deleted)");
    if (!upgraded && running.size() > 1 && running == settings_argv()) {
        m_pid = pid;
        m_start = *start;
        common::log_info("adopted running deploy-proxy (pid " + std::to_string(pid) + ")");
        return true;
    }
    // Started with other settings (or another binary): a new proxy takes over
    // the same listening sockets, then the old one drains and exits. Clients
    // wait in the shared backlog meanwhile; none is refused.
    common::log_info("deploy-proxy (pid " + std::to_string(pid) + ") runs " +
                     (upgraded ? "a binary since replaced on disk" : "with other settings") +
                     "; replacing it");
    if (auto spawned = spawn_locked(BindFailure::warn); !spawned) {
        common::log_error("cannot replace deploy-proxy: " + spawned.error().message +
                          "; keeping the running one");
        m_pid = pid;
        m_start = *start;
        return true;
    }
    if (runtime::process_matches(pid, *start))
        ::kill(pid, SIGTERM);
    return true;
}

common::Status ProxySupervisor::spawn_locked(BindFailure bind_failure) {
    // The sockets first: a proxy that cannot have its address is not started.
    for (auto* socket : {&m_http, &m_https}) {
        auto taken = take_socket(*socket, 0, bind_failure);
        if (taken)
            continue;
        if (bind_failure == BindFailure::fatal)
            return taken;
        // The address may still be held by a proxy of ours being replaced,
        // whose socket could not be taken: the new proxy binds it itself.
        common::log_warn(taken.error().message + "; it binds the address itself");
    }
    std::error_code ec;
    fs::create_directories(m_data_dir.proxy_dir(), ec);
    int log =
        ::open(m_data_dir.proxy_log().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0)
        return make_error(ErrorKind::io, "cannot open " + m_data_dir.proxy_log().string() + ": " +
                                             std::strerror(errno));
    runtime::SpawnSpec spec;
    spec.argv = settings_argv();
    if (m_http.fd >= 0) {
        spec.inherit_fds.push_back(m_http.fd);
        spec.argv.insert(spec.argv.end(), {"--listen-fd", "3"});
        if (m_https.fd >= 0) { // fd 4 only after fd 3
            spec.inherit_fds.push_back(m_https.fd);
            spec.argv.insert(spec.argv.end(), {"--tls-listen-fd", "4"});
        }
    }
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
    const unsigned workers = std::max(m_settings.threads, 1u);
    common::log_info("started deploy-proxy on " + m_settings.listen +
                     (m_settings.https() ? " and " + m_settings.https_listen : "") + " (pid " +
                     std::to_string(*pid) + ", " + std::to_string(workers) +
                     (workers == 1 ? " worker)" : " workers)"));
    return common::atomic_write_file(m_data_dir.proxy_pid(), std::to_string(*pid) + "\n");
}

common::Status ProxySupervisor::load_probe_key_locked() {
    if (!m_probe_key.empty())
        return {};
    const auto file = m_data_dir.proxy_probe_key();
    if (auto text = common::read_file(file); text && text->size() >= 64) {
        m_probe_key = text->substr(0, 64);
        return {};
    }
    auto random = common::random_hex(32);
    if (!random)
        return make_error(ErrorKind::internal,
                          "cannot make the proxy's probe key: " + random.error().message);
    std::string key = std::move(*random);
    TRY(common::ensure_directory(m_data_dir.proxy_dir(), fs::perms::owner_all));
    TRY(common::atomic_write_file(file, key + "\n", 0600));
    m_probe_key = std::move(key);
    return {};
}

common::Status ProxySupervisor::ensure_running() {
    if (!enabled())
        return {};
    std::lock_guard lock(m_mutex);
    TRY(load_probe_key_locked()); // before a proxy that reads it starts
    if (alive_locked() || adopt_locked())
        return {};
    auto now = std::chrono::steady_clock::now();
    if (m_pid > 0 && now - m_last_spawn < std::chrono::seconds(2))
        return {}; // crash loop
    m_last_spawn = now;
    if (m_pid > 0)
        common::log_warn("deploy-proxy (pid " + std::to_string(m_pid) + ") is gone");
    // The first start (no proxy of ours runs): an address that another
    // program holds stops the agent. Later restarts keep the sockets held.
    return spawn_locked(m_pid > 0 ? BindFailure::warn : BindFailure::fatal);
}

void ProxySupervisor::reload() {
    std::lock_guard lock(m_mutex);
    if (alive_locked() && ::kill(m_pid, SIGHUP) != 0)
        common::log_warn("cannot signal deploy-proxy: " + std::string(std::strerror(errno)));
}

std::string ProxySupervisor::probe_address() const {
    auto listen = common::parse_host_port(m_settings.listen, common::EmptyHost::allowed);
    if (!listen)
        return "127.0.0.1";
    if (listen->host.empty() || listen->host == "0.0.0.0")
        return "127.0.0.1";
    if (listen->host == "::")
        return "::1";
    return listen->host;
}

ProxySupervisor::ProbeAnswer ProxySupervisor::probe(const std::string& host,
                                                    const std::string& path,
                                                    std::chrono::milliseconds timeout) const {
    std::string key;
    {
        std::lock_guard lock(m_mutex);
        key = m_probe_key;
    }
    auto listen = common::parse_host_port(m_settings.listen, common::EmptyHost::allowed);
    runtime::HttpGet request;
    request.address = probe_address();
    request.port = listen ? listen->port : 80;
    request.path = path.empty() ? "/" : path;
    request.host = host;
    request.fields = {{"X-Deploy-Probe", key}};
    auto answer = runtime::http_get(request, timeout);
    return {answer.status, answer.message, answer.field("X-Deploy-Routed")};
}

} // namespace agent
