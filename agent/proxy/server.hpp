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
    // A listening socket inherited from the agent (-1: bind `listen` here).
    // The agent keeps its own copy, so connections wait in the backlog while
    // a crashed proxy is restarted instead of being refused.
    int listen_fd = -1;
};

// Serves until SIGTERM or SIGINT, then drains. Returns the exit code.
int run_server(const ServerOptions& options);

} // namespace agent::proxy
