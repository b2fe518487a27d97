#pragma once
// An authenticated libssh2 session to one server: TCP connect, handshake, host
// key check against known_hosts, public-key login. Private to cli/transport
// (it includes libssh2.h); the rest of the CLI sees ssh_client.hpp.

#include <cli/transport/ssh_client.hpp>
#include <common/result.hpp>

#include <libssh2.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace cli::transport {

class SshTunnel;

// "deploy@web1:22", for messages.
std::string ssh_address(const SshOptions& options);

// Owns the socket and the session; one thread at a time may use it. Through bastions
// (ProxyJump), the socket is the local end of a forward, and the session also owns the
// relays of the hops (each a thread with its own session), closed after it.
class SshSession {
  public:
    SshSession();
    ~SshSession();
    SshSession(SshSession&& other) noexcept;
    SshSession& operator=(SshSession&& other) noexcept;
    SshSession(const SshSession&) = delete;

    LIBSSH2_SESSION* get() const { return m_session; }
    int fd() const { return m_fd; }
    // Says goodbye to the server (when it is still there) and frees everything.
    void close(bool server_alive);

  private:
    friend common::Result<SshSession> open_ssh_session(SshOptions& options);
    friend common::Result<SshSession> ssh_log_in(SshOptions& options, int fd);
    int m_fd = -1;
    LIBSSH2_SESSION* m_session = nullptr;
    std::vector<std::unique_ptr<SshTunnel>> m_hops; // first hop first
};

// Connects (through options.jumps, each hop's host key checked and logged in to) and logs
// in, in blocking mode. Errors: connection (cannot reach, handshake, a bastion refusing to
// forward), auth (host key unknown or changed, login refused), config (a missing
// identity_file), all exit 3 but config (2). Fills in options.user and options.home when
// they were empty.
common::Result<SshSession> open_ssh_session(SshOptions& options);

// The handshake, host key check and login of open_ssh_session on an open socket `fd`
// (owned by the session from now on).
common::Result<SshSession> ssh_log_in(SshOptions& options, int fd);

// libssh2's last error message for the session.
std::string ssh_error_message(LIBSSH2_SESSION* session);

// Why a libssh2 call that returned `rc` failed: its socket errors say the server or the
// network went away (the session's last error text can still be an earlier call's "would
// block" then); otherwise the session's last error when it is this call's, else the code.
std::string ssh_failure(LIBSSH2_SESSION* session, int rc);
inline constexpr const char* k_ssh_server_gone =
    "the server closed the connection (sshd stopped, or the network dropped it)";

} // namespace cli::transport

namespace cli::transport::detail {

// Logs in with ssh-agent and the key files (ssh_auth.cpp).
common::Status authenticate(LIBSSH2_SESSION* session, const SshOptions& options);

// "~/x" -> HOME/x.
std::filesystem::path expand_home(const std::string& path, const std::filesystem::path& home);

// $USER (or the password database's name), and $HOME (or the password database's).
std::string local_user();
std::filesystem::path home_dir();

} // namespace cli::transport::detail
