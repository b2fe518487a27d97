#pragma once
// One HTTP health probe: GET http://127.0.0.1:PORT/PATH over a plain socket.

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

} // namespace agent::runtime
