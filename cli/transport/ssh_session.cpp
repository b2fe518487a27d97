#include <cli/transport/known_hosts.hpp>
#include <cli/transport/ssh_session.hpp>
#include <cli/transport/ssh_tunnel.hpp>
#include <common/ssh_key.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace cli::transport {

namespace {

using common::ErrorKind;
namespace fs = std::filesystem;

void init_libssh2_once() {
    static const int rc = libssh2_init(0);
    (void)rc;
}

// A non-blocking connect bounded by `timeout_ms`; the error says why.
int connect_address(const addrinfo& ai, int timeout_ms, std::string& why) {
    const int fd =
        ::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai.ai_protocol);
    if (fd < 0) {
        why = std::strerror(errno);
        return -1;
    }
    int error = 0;
    if (::connect(fd, ai.ai_addr, ai.ai_addrlen) != 0) {
        error = errno;
        if (error == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            const int ready = ::poll(&p, 1, timeout_ms);
            socklen_t length = sizeof error;
            if (ready == 0)
                error = ETIMEDOUT;
            else if (ready < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0)
                error = errno;
        }
    }
    if (error != 0) {
        why = error == ETIMEDOUT ? fmt::format("no answer within {} s", timeout_ms / 1000)
                                 : std::strerror(error);
        ::close(fd);
        return -1;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    return fd;
}

// The ssh command that reaches the same server, for messages.
std::string ssh_command(const SshOptions& options) {
    const auto login = options.user.empty() ? options.host : options.user + "@" + options.host;
    if (options.port != 0 && options.port != 22)
        return fmt::format("ssh -p {} {}", options.port, login);
    return "ssh " + login;
}

common::Result<int> connect_tcp(const SshOptions& options) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const auto port = std::to_string(options.port);
    if (const int rc = ::getaddrinfo(options.host.c_str(), port.c_str(), &hints, &list); rc != 0)
        return common::make_error(ErrorKind::connection,
                                  fmt::format("cannot reach ssh://{}: cannot resolve {}: {}",
                                              ssh_address(options), options.host,
                                              ::gai_strerror(rc)));
    std::string why;
    int fd = -1;
    for (const addrinfo* ai = list; ai && fd < 0; ai = ai->ai_next)
        fd = connect_address(*ai, options.connect_timeout_s * 1000, why);
    ::freeaddrinfo(list);
    if (fd < 0)
        return common::make_error(
            ErrorKind::connection,
            fmt::format("cannot reach ssh://{}: {}:{}: {}; is sshd running there? Check that `{}` "
                        "logs in from this machine, and the URL: --host, DEPLOYCTL_HOST or the "
                        "target's hosts in deploy.toml",
                        ssh_address(options), options.host, options.port, why,
                        ssh_command(options)));
    return fd;
}

std::string key_type_name(LIBSSH2_SESSION* session) {
    std::size_t length = 0;
    int type = 0;
    const char* blob = libssh2_session_hostkey(session, &length, &type);
    return blob ? common::key_type_of({blob, length}) : std::string("unknown");
}

// ssh-ed25519 -> "ed25519", as in /etc/ssh/ssh_host_ed25519_key.pub.
const char* host_key_file_kind(const std::string& type) {
    if (type == "ssh-ed25519")
        return "ed25519";
    if (type == "ssh-rsa")
        return "rsa";
    if (type == "ssh-dss")
        return "dsa";
    return "ecdsa";
}

common::Error unknown_key(const SshOptions& options, const std::string& type,
                          const std::string& fingerprint, const fs::path& file) {
    return common::make_error(
        ErrorKind::auth,
        fmt::format("the host key of {} is not known: {} {}\n"
                    "Nothing was sent. Check the fingerprint with the server's administrator "
                    "(ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub on the server), then either\n"
                    "  ssh-keyscan -p {} {} >> {}\n"
                    "or run deployctl once with --accept-new-host-key to record it.",
                    known_hosts_name(options.host, options.port), type, fingerprint,
                    host_key_file_kind(type), options.port, options.host, file.string()));
}

common::Error changed_key(const SshOptions& options, const std::string& type,
                          const std::string& fingerprint, const HostKeyCheck& check,
                          const fs::path& file) {
    return common::make_error(
        ErrorKind::auth,
        fmt::format("WARNING: the HOST KEY CHANGED for {}: someone may be intercepting the "
                    "connection, or the server was reinstalled.\n"
                    "  known in {}: {} {}\n"
                    "  offered now: {} {}\n"
                    "Nothing was sent. If the change is expected, remove the old key with\n"
                    "  ssh-keygen -R '{}' -f {}\n"
                    "and connect again (--accept-new-host-key records the new one).",
                    known_hosts_name(options.host, options.port), file.string(), type,
                    check.known_fingerprint.empty() ? "(unreadable)" : check.known_fingerprint,
                    type, fingerprint, known_hosts_name(options.host, options.port),
                    file.string()));
}

// The known_hosts files to look in (UserKnownHostsFile, else ~/.ssh/known_hosts); a new
// key is recorded in the first.
std::vector<fs::path> known_hosts_files(const SshOptions& options) {
    if (!options.known_hosts.empty())
        return options.known_hosts;
    return {options.home / ".ssh" / "known_hosts"};
}

common::Status verify_host_key(LIBSSH2_SESSION* session, const SshOptions& options) {
    std::size_t length = 0;
    int type = 0;
    const char* key = libssh2_session_hostkey(session, &length, &type);
    if (!key)
        return common::make_error(ErrorKind::connection,
                                  fmt::format("ssh://{} sent no host key", ssh_address(options)));
    const std::string_view blob(key, length);
    const auto files = known_hosts_files(options);
    std::optional<std::pair<HostKeyCheck, fs::path>> changed;
    for (const auto& file : files) {
        auto check = check_known_host(file, options.host, options.port, blob);
        if (!check)
            return check.error();
        if (check->status == HostKeyStatus::known)
            return {};
        if (check->status == HostKeyStatus::changed && !changed)
            changed.emplace(*check, file);
    }
    const auto fingerprint = common::fingerprint_sha256(blob);
    const auto type_name = key_type_name(session);
    if (changed)
        return changed_key(options, type_name, fingerprint, changed->first, changed->second);
    if (!options.accept_new_host_key &&
        !(options.confirm_new_host_key &&
          options.confirm_new_host_key(known_hosts_name(options.host, options.port), type_name,
                                       fingerprint)))
        return unknown_key(options, type_name, fingerprint, files.front());
    if (auto ok = add_known_host(files.front(), options.host, options.port, blob); !ok)
        return ok;
    std::fprintf(stderr, "Recorded the host key of %s in %s: %s %s\n",
                 known_hosts_name(options.host, options.port).c_str(), files.front().c_str(),
                 type_name.c_str(), fingerprint.c_str());
    return {};
}

void fill_defaults(SshOptions& options) {
    if (options.user.empty())
        options.user = detail::local_user();
    if (options.home.empty())
        options.home = detail::home_dir();
    if (options.port == 0)
        options.port = 22;
}

} // namespace

// Handshake, host key check and login on `fd` (a TCP socket, or the local end of a forward
// through a bastion), which the session owns from now on.
common::Result<SshSession> ssh_log_in(SshOptions& options, int fd) {
    SshSession ssh;
    ssh.m_fd = fd;
    ssh.m_session = libssh2_session_init();
    if (!ssh.m_session)
        return common::make_error(ErrorKind::internal, "libssh2: cannot create a session");
    libssh2_session_set_blocking(ssh.m_session, 1);
    // ConnectTimeout bounds the handshake too, as for ssh; at least 20 s by default.
    libssh2_session_set_timeout(ssh.m_session, std::max(options.connect_timeout_s * 1000L, 20000L));
    if (libssh2_session_handshake(ssh.m_session, ssh.m_fd) != 0)
        return common::make_error(ErrorKind::connection,
                                  fmt::format("cannot reach ssh://{}: the SSH handshake failed: {}",
                                              ssh_address(options),
                                              ssh_error_message(ssh.m_session)));
    if (auto ok = verify_host_key(ssh.m_session, options); !ok)
        return ok.error();
    if (auto ok = detail::authenticate(ssh.m_session, options); !ok)
        return ok.error();
    libssh2_session_set_timeout(ssh.m_session, 0);
    return ssh;
}

namespace {

// Opens a direct-tcpip channel from `bastion` (logged in to `hop`) to `next`, hands the
// session and the channel to a relay thread, and returns the local socket that reaches
// `next`.
common::Result<int> forward(SshSession bastion, const SshOptions& hop, const SshOptions& next,
                            std::vector<std::unique_ptr<SshTunnel>>& hops) {
    libssh2_session_set_timeout(bastion.get(), std::max(hop.connect_timeout_s * 1000L, 20000L));
    LIBSSH2_CHANNEL* channel = libssh2_channel_direct_tcpip_ex(bastion.get(), next.host.c_str(),
                                                               next.port, "127.0.0.1", 22);
    if (!channel)
        return common::make_error(
            ErrorKind::connection,
            fmt::format("cannot reach ssh://{} through the bastion {} (ProxyJump): it did not "
                        "open a connection to {}:{}: {}. Its sshd must allow forwarding there "
                        "(AllowTcpForwarding, PermitOpen), and the address must be right as the "
                        "bastion sees it",
                        ssh_address(next), ssh_address(hop), next.host, next.port,
                        ssh_error_message(bastion.get())));
    libssh2_session_set_timeout(bastion.get(), 0);
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        return common::make_error(
            ErrorKind::io, fmt::format("cannot make a socket pair: {}", std::strerror(errno)));
    ::fcntl(pair[1], F_SETFL, ::fcntl(pair[1], F_GETFL) | O_NONBLOCK);
    auto relay =
        SshTunnel::relay(std::move(bastion), channel, pair[1], ssh_address(hop), hop.keepalive_s);
    if (!relay) {
        ::close(pair[0]);
        return relay.error();
    }
    hops.push_back(std::move(*relay));
    return pair[0];
}

} // namespace

std::string ssh_address(const SshOptions& options) {
    const bool v6 = options.host.find(':') != std::string::npos;
    return fmt::format("{}@{}{}{}:{}", options.user, v6 ? "[" : "", options.host, v6 ? "]" : "",
                       options.port);
}

std::string ssh_error_message(LIBSSH2_SESSION* session) {
    char* message = nullptr;
    int length = 0;
    libssh2_session_last_error(session, &message, &length, 0);
    return message && length > 0 ? std::string(message, static_cast<std::size_t>(length))
                                 : std::string("unknown error");
}

std::string ssh_failure(LIBSSH2_SESSION* session, int rc) {
    switch (rc) {
    case LIBSSH2_ERROR_SOCKET_SEND:
    case LIBSSH2_ERROR_SOCKET_RECV:
    case LIBSSH2_ERROR_SOCKET_DISCONNECT:
    case LIBSSH2_ERROR_SOCKET_TIMEOUT:
        return k_ssh_server_gone;
    default:
        break;
    }
    if (libssh2_session_last_errno(session) == rc)
        return ssh_error_message(session);
    return fmt::format("libssh2 error {}", rc);
}

SshSession::SshSession() = default;

SshSession::~SshSession() {
    close(false);
}

SshSession::SshSession(SshSession&& other) noexcept
    : m_fd(std::exchange(other.m_fd, -1)), m_session(std::exchange(other.m_session, nullptr)),
      m_hops(std::move(other.m_hops)) {}

SshSession& SshSession::operator=(SshSession&& other) noexcept {
    if (this != &other) {
        close(false);
        m_fd = std::exchange(other.m_fd, -1);
        m_session = std::exchange(other.m_session, nullptr);
        m_hops = std::move(other.m_hops);
    }
    return *this;
}

void SshSession::close(bool server_alive) {
    if (m_session) {
        if (server_alive) {
            libssh2_session_set_blocking(m_session, 1);
            libssh2_session_set_timeout(m_session, 2000);
            libssh2_session_disconnect(m_session, "deployctl is done");
        }
        // Freeing closes the channels left, each waiting for the server's answer: a server
        // told goodbye answers no more, and through a bastion its end of the connection
        // closes only when the relay does. The socket shut first, those waits end at once.
        if (m_fd >= 0)
            ::shutdown(m_fd, SHUT_RDWR);
        libssh2_session_free(m_session);
        m_session = nullptr;
    }
    if (m_fd >= 0)
        ::close(m_fd);
    m_fd = -1;
    while (!m_hops.empty()) // the last hop (nearest the server) first
        m_hops.pop_back();
}

common::Result<SshSession> open_ssh_session(SshOptions& options) {
    init_libssh2_once();
    fill_defaults(options);
    for (auto& hop : options.jumps)
        fill_defaults(hop);
    SshOptions& first = options.jumps.empty() ? options : options.jumps.front();
    TRY_ASSIGN(auto fd, connect_tcp(first));
    TRY_ASSIGN(auto ssh, ssh_log_in(first, fd));
    std::vector<std::unique_ptr<SshTunnel>> hops;
    for (std::size_t i = 0; i < options.jumps.size(); ++i) {
        const auto& hop = options.jumps[i];
        SshOptions& next = i + 1 < options.jumps.size() ? options.jumps[i + 1] : options;
        TRY_ASSIGN(auto local, forward(std::move(ssh), hop, next, hops));
        TRY_ASSIGN(ssh, ssh_log_in(next, local));
    }
    ssh.m_hops = std::move(hops);
    return ssh;
}

namespace detail {

std::string local_user() {
    if (const char* user = std::getenv("USER"); user && *user)
        return user;
    if (const passwd* entry = ::getpwuid(::getuid()))
        return entry->pw_name;
    return "root";
}

fs::path home_dir() {
    if (const char* home = std::getenv("HOME"); home && *home)
        return home;
    if (const passwd* entry = ::getpwuid(::getuid()))
        return entry->pw_dir;
    return "/";
}

} // namespace detail

} // namespace cli::transport
