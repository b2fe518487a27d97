#pragma once
// An authenticated libssh2 session to one server: TCP connect, handshake, host
// key check against known_hosts, public-key login. Private to cli/transport
// (it includes libssh2.h); the rest of the CLI sees ssh_client.hpp.

#include <cli/transport/ssh_client.hpp>
#include <common/result.hpp>

#include <libssh2.h>

#include <filesystem>
#include <string>

namespace cli::transport {

// "deploy@web1:22", for messages.
std::string ssh_address(const SshOptions& options);

// Owns the socket and the session; one thread at a time may use it.
class SshSession {
  public:
    SshSession() = default;
    ~SshSession();
    SshSession(SshSession&& other) noexcept;
    SshSession& operator=(SshSession&&) = delete;
    SshSession(const SshSession&) = delete;

    LIBSSH2_SESSION* get() const { return m_session; }
    int fd() const { return m_fd; }
    // Says goodbye to the server (when it is still there) and frees everything.
    void close(bool server_alive);

  private:
    friend common::Result<SshSession> open_ssh_session(SshOptions& options);
    int m_fd = -1;
    LIBSSH2_SESSION* m_session = nullptr;
};

// Connects and logs in, in blocking mode. Errors: connection (cannot reach,
// handshake), auth (host key unknown or changed, login refused), config (a
// missing identity_file), all exit 3 but config (2). Fills in options.user
// and options.home when they were empty.
common::Result<SshSession> open_ssh_session(SshOptions& options);

// libssh2's last error message for the session.
std::string ssh_error_message(LIBSSH2_SESSION* session);

} // namespace cli::transport

namespace cli::transport::detail {

// Logs in with ssh-agent and the key files (ssh_auth.cpp).
common::Status authenticate(LIBSSH2_SESSION* session, const SshOptions& options);

// "~/x" -> HOME/x.
std::filesystem::path expand_home(const std::string& path, const std::filesystem::path& home);

} // namespace cli::transport::detail
