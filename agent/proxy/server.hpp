#pragma once
// The deploy-proxy process: workers, routing table reloads (SIGHUP and a
// 250 ms file check), graceful SIGTERM. Only main.cpp includes this.

#include <common/address.hpp>

#include <filesystem>

namespace agent::proxy {

struct ServerOptions {
    common::HostPort listen;
    std::filesystem::path routes;
    std::filesystem::path applied;
    unsigned threads = 1;
};

// Serves until SIGTERM or SIGINT, then drains. Returns the exit code.
int run_server(const ServerOptions& options);

} // namespace agent::proxy
