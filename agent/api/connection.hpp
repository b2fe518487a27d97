#pragma once
// One client connection, plain or TLS: reads HTTP/1.1 requests (keep-alive),
// dispatches them through the Router and writes the answers, streams included.

#include <agent/api/gate.hpp>
#include <agent/api/router.hpp>
#include <common/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>

namespace agent::api {

struct ConnectionOptions {
    // Where a BodyKind::file request body is written (same file system as the blobs).
    std::function<std::filesystem::path()> temp_path;
    std::uint64_t max_file_body = 0;
    // A BodyKind::file body whose Content-Length would not fit on the disk
    // (with its reserve kept free): the reason, answered 507 disk_full before
    // any of it is read. None: not checked.
    std::function<common::Status(std::uint64_t bytes)> disk_check{};
    // A client that sends nothing for this long (mid-request or between
    // keep-alive requests) is disconnected, freeing its thread.
    std::chrono::milliseconds idle_timeout{60000};
    // A TLS client must complete its handshake within this.
    std::chrono::milliseconds handshake_timeout{10000};
    // On TCP (agent/api/server.cpp): a request's whole head, the TLS
    // handshake included for the first, must arrive within this from the
    // moment the server waits for it (accept, or the end of the previous
    // answer); it is not restarted by each byte.
    std::chrono::milliseconds head_timeout{10000};
    // A request body must keep this rate on average once body_grace has
    // passed (else 408 and the connection closes).
    std::uint64_t min_body_rate = 1024;
    std::chrono::milliseconds body_grace{10000};
    // Authorizes and records each request; none: every request goes on.
    RequestGate* gate = nullptr;
};

class ApiCertificate; // agent/api/tls.hpp

// Serves requests on the connected socket `fd` (TCP or unix) until the client
// closes it, an error occurs or the socket is shut down; every request carries
// `peer`. The caller keeps ownership of `fd`.
void serve_connection(int fd, const Router& router, const ConnectionOptions& options,
                      const Peer& peer = {});
// The same over TLS with the certificate's current pair: the handshake first,
// then requests until the client closes; a failed handshake closes at once.
void serve_tls_connection(int fd, ApiCertificate& certificate, const Router& router,
                          const ConnectionOptions& options, const Peer& peer = {});

} // namespace agent::api
