#pragma once
// One HTTP health probe: GET http://127.0.0.1:PORT/PATH over a plain socket.

#include <chrono>
#include <string>

namespace agent::runtime {

struct ProbeResult {
    int status = 0;      // HTTP status, 0 when there was no HTTP answer
    std::string message; // "HTTP 200", "connection refused", ...
    bool healthy() const { return status >= 200 && status < 400; }
};

ProbeResult http_probe(int port, const std::string& path, std::chrono::milliseconds timeout);

} // namespace agent::runtime
