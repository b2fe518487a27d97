#pragma once
// The proxy routing table (docs/api.md "Proxy routing table").

#include <common/config.hpp>
#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace agent {

struct Route {
    std::string host;
    std::string app;
    std::string release;
    std::string upstream; // "127.0.0.1:PORT" for an app; empty for a static site
    // A [static] release: the proxy serves the files under this absolute
    // directory itself (RELEASE_DIR/static.dir), with the SPA fallback if `spa`.
    std::string static_root{}; // (initialized: {host, app, release, upstream} stays valid)
    bool spa = false;
    // deployctl stop: the proxy answers 503 "APP is stopped" (no upstream, no root).
    bool stopped = false;
};

// "APP.localhost" plus every domain of every target, without duplicates.
std::vector<std::string> route_hosts(const std::string& app, const common::AppConfig& config);
std::string routing_table_json(std::uint64_t generation, const std::vector<Route>& routes);
// The generation in a routes.json or applied file: a JSON object with
// "generation" or a bare number. 0 when missing or unreadable.
std::uint64_t read_generation(const std::filesystem::path& file);

} // namespace agent
