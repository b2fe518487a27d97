#pragma once
// The agent's HTTP server: a listening socket (TCP, or unix for local users and
// SSH) and one thread per connection (few clients, long-lived streams). Beast
// and Asio stay in the .cpp files.

#include <agent/api/connection.hpp>
#include <agent/api/listen.hpp>
#include <agent/api/router.hpp>
#include <common/result.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>

namespace agent::api {

// Open connections served at once; past it a client gets 503 at once.
inline constexpr std::size_t k_max_connections = 256;

class Server {
  public:
    Server(const Router& router, ConnectionOptions options);
    // Only after wait_idle() returned true: connection threads use the server.
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds and listens (ErrorKind::io when the address is in use or not ours).
    common::Status listen(const ListenAddress& address);
    // Serves every connection over TLS with `certificate` (before run()).
    void use_tls(std::shared_ptr<ApiCertificate> certificate);
    // Or listens on a unix socket (see listen_unix in unix_socket.hpp); each
    // request then names the connecting user (Request::peer). The file is
    // removed by stop().
    common::Status listen_unix(const std::filesystem::path& path);
    // The bound port (useful with port 0).
    unsigned short port() const;
    // Accepts connections until stop(); each is served on its own thread.
    void run();
    // From any thread: stops accepting and shuts down every open connection.
    void stop();
    // Waits until every connection thread has finished; false on timeout.
    bool wait_idle(std::chrono::milliseconds timeout);

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace agent::api
