#pragma once
// One HTTP health probe: GET http://127.0.0.1:PORT/PATH over a plain socket; and
// the GET the agent sends the Docker Engine API over its unix socket.

#include <common/result.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace agent::runtime {

struct ProbeResult {
    int status = 0;      // HTTP status, 0 when there was no HTTP answer
    std::string message; // "HTTP 200", "connection refused", ...
    bool healthy() const { return status >= 200 && status < 400; }
};

ProbeResult http_probe(int port, const std::string& path, std::chrono::milliseconds timeout);

// A GET to any local address, with its own Host and fields, that keeps the
// answer's header fields (the agent's probe through deploy-proxy).
struct HttpGet {
    std::string address = "127.0.0.1"; // an IPv4 or IPv6 literal (no brackets)
    int port = 0;
    std::string path = "/";
    std::string host; // the Host field; empty: ADDRESS:PORT
    std::vector<std::pair<std::string, std::string>> fields;
};

struct HttpAnswer : ProbeResult {
    std::vector<std::pair<std::string, std::string>> fields;
    // The value of the first field named `name` (any case).
    std::optional<std::string> field(std::string_view name) const;
};

HttpAnswer http_get(const HttpGet& request, std::chrono::milliseconds timeout);

// The Docker Engine API over its unix socket, for what the agent asks often and
// must know fast: a container's state (`docker inspect` through the CLI costs a
// process and ~45 ms; the socket ~1 ms, which is most of a woken app's wait).
struct SocketAnswer {
    int status = 0;   // the HTTP status
    std::string body; // the whole body
};

// GET `target` (an origin-form path) over HTTP/1.0 on the unix socket at `path`:
// the daemon answers and closes. ErrorKind::io when it cannot be reached, answers
// something that is not HTTP (or in chunks), more than 4 MiB, or not within `timeout`.
common::Result<SocketAnswer> unix_http_get(const std::string& path, const std::string& target,
                                           std::chrono::milliseconds timeout);

} // namespace agent::runtime
