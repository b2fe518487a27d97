#pragma once
// The proxy's routing table (docs/api.md, "Proxy routing table"): which app
// release answers for which Host header. Pure logic: no sockets here.

#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace agent::proxy {

struct Route {
    std::string host; // normalized (see normalize_host)
    std::string app;
    std::string release;
    // An app route forwards to `upstream`; a static route (a [static]
    // release) is served from the files under `static_root` instead. A route
    // has exactly one of the two.
    std::string upstream;         // "127.0.0.1:41234", as written; also the pool key
    std::string upstream_address; // "127.0.0.1" (IP literal, no brackets)
    std::uint16_t upstream_port = 0;
    std::string static_root; // absolute directory; need not exist when the table loads
    bool spa = false;        // unknown extension-less paths answer with /index.html
    // deployctl stop: neither upstream nor static_root; the proxy answers 503.
    bool stopped = false;

    bool is_static() const { return !static_root.empty(); }
};

class RouteTable {
  public:
    RouteTable() = default;
    // Routes must have distinct normalized hosts (parse_routes checks).
    RouteTable(std::uint64_t generation, std::vector<Route> routes);

    std::uint64_t generation() const { return m_generation; }
    std::size_t size() const { return m_routes.size(); }
    const std::vector<Route>& routes() const { return m_routes; }
    // `host` must already be normalized. nullptr when no app is deployed there.
    const Route* find(std::string_view host) const;

  private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::uint64_t m_generation = 0;
    std::vector<Route> m_routes;
    std::unordered_map<std::string, std::size_t, Hash, std::equal_to<>> m_index;
};

// Host header value → lookup key: lower case, ":port" and one trailing dot
// removed ("Hello.Localhost.:8080" → "hello.localhost"). Writes "" into `out`
// when the value cannot be a host name. Reuses `out`'s capacity (hot path).
void normalize_host(std::string_view host, std::string& out);
std::string normalize_host(std::string_view host);

// Parses a routes.json document. `source` names it in error messages.
common::Result<RouteTable> parse_routes(std::string_view json, std::string_view source);

} // namespace agent::proxy
