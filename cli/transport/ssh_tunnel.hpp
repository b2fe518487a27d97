#pragma once
// Relays connections to a private unix socket (a 0700 temporary folder) over
// one SSH session: each accepted connection gets a direct-streamlocal channel
// to the agent's socket on the server or, once the server has refused one, an
// exec channel running the agent command. One thread makes every libssh2 call (a session is not
// thread-safe), non-blocking, with poll(); each direction of each connection
// holds at most one fixed buffer, so a slow side stops the reading of the
// other (the SSH window does the rest). Keep-alives every 15 s.

#include <cli/transport/ssh_session.hpp>
#include <common/result.hpp>

#include <memory>
#include <optional>
#include <string>

namespace cli::transport {

class SshTunnel {
  public:
    // `agent_socket` is the server's socket path asked for by direct-streamlocal
    // channels ("": none, every channel runs the command); `command_line` is sent
    // as the exec request; `where` ("deploy@web1:22") names the server in errors.
    // Starts the tunnel thread.
    static common::Result<std::unique_ptr<SshTunnel>> start(SshSession session,
                                                            std::string command_line,
                                                            std::string agent_socket,
                                                            std::string where, int keepalive_s);
    // A bastion's relay (ProxyJump): relays `channel` (a direct-tcpip channel of `session`)
    // and the local socket `fd` (non-blocking, owned from now on) until destroyed.
    static common::Result<std::unique_ptr<SshTunnel>>
    relay(SshSession session, LIBSSH2_CHANNEL* channel, int fd, std::string where, int keepalive_s);
    // Closes every channel, says goodbye to the server, removes the socket.
    ~SshTunnel();
    SshTunnel(const SshTunnel&) = delete;
    SshTunnel& operator=(const SshTunnel&) = delete;

    const std::string& socket_path() const;
    // Why the tunnel failed (the connection was lost, or the agent command
    // failed), once it has; set before the local connections are closed.
    std::optional<common::Error> failure() const;

    struct Impl;

  private:
    explicit SshTunnel(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace cli::transport
