// deploy-proxy's routing table and Host header handling:
// - agent::proxy::parse_routes (what RouteLoader::reload() does with the text of
//   routes.json): JSON text -> table or error, never a crash. An accepted table
//   has distinct, normalized, non-empty hosts that find() returns (a wildcard
//   "*.DOMAIN" also for a name one label under DOMAIN); each route is
//   either an app (1 to 64 distinct IP:PORT with a port, the first also in
//   `upstream`) or a static site (an absolute root) or stopped or sleeping
//   (scaled to zero by idle_stop: no upstream until a request wakes it);
// - agent::proxy::normalize_host on the raw input as a Host header: the key has
//   only host name characters, at most 253 bytes, and is stable when normalized
//   again (IPv6 literals aside: their brackets are gone).

#include <agent/proxy/routes.hpp>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "check.hpp"

namespace {

using namespace agent::proxy;

void check_host_header(std::string_view header) {
    const std::string key = normalize_host(header);
    if (key.empty())
        return;
    FUZZ_CHECK(key.size() <= 253);
    FUZZ_CHECK(key.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-._:") ==
               std::string::npos);
    // Normalizing again changes nothing, except for an IPv6 literal (its brackets
    // are gone) and a name with empty labels ("a.." -> "a." -> "a"): one trailing
    // dot is dropped per pass, and such names are not DNS names.
    if (key.find(':') == std::string::npos && key.back() != '.')
        FUZZ_CHECK(normalize_host(key) == key);
}

void check_table(const RouteTable& table) {
    std::set<std::string> hosts;
    for (const auto& route : table.routes()) {
        // A host name, or "*." and one (a wildcard route, *.DOMAIN): a name one
        // label under it that no route names exactly finds the wildcard.
        const bool wildcard = route.host.rfind("*.", 0) == 0;
        const std::string_view named = std::string_view(route.host).substr(wildcard ? 2 : 0);
        FUZZ_CHECK(!named.empty() &&
                   named.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-._") ==
                       std::string_view::npos);
        FUZZ_CHECK(hosts.insert(route.host).second);
        FUZZ_CHECK(table.find(route.host) == &route);
        if (wildcard) {
            // (unless a route names it exactly: that one wins)
            const std::string below = "fuzz-label." + std::string(named);
            const Route* found = table.find(below);
            FUZZ_CHECK(found == &route || (found != nullptr && found->host == below));
        }
        FUZZ_CHECK(!route.app.empty() && !route.release.empty());
        if (route.is_static()) {
            FUZZ_CHECK(route.upstream.empty() && route.static_root.front() == '/');
            FUZZ_CHECK(route.static_root.find('\0') == std::string::npos);
            FUZZ_CHECK(route.upstreams.empty());
        } else if (route.stopped || route.sleeping()) {
            FUZZ_CHECK(route.upstreams.empty() && route.upstream.empty());
            FUZZ_CHECK(!(route.stopped && route.sleeping()));
            FUZZ_CHECK(route.wake_error.empty() || route.sleeping());
        } else {
            FUZZ_CHECK(!route.upstream.empty() && route.upstream_port != 0 &&
                       !route.upstream_address.empty());
            FUZZ_CHECK(!route.spa);
            FUZZ_CHECK(!route.upstreams.empty() && route.upstreams.size() <= k_max_upstreams);
            FUZZ_CHECK(route.upstreams.front().key == route.upstream);
            FUZZ_CHECK((route.balance != nullptr) == (route.upstreams.size() > 1));
            std::set<std::string> keys;
            for (const auto& upstream : route.upstreams) {
                FUZZ_CHECK(upstream.port != 0 && !upstream.address.empty());
                FUZZ_CHECK(keys.insert(upstream.key).second);
            }
            // Round robin and failover stay within the route's upstreams.
            FUZZ_CHECK(route.pick() < route.upstreams.size());
            auto next = route.next_untried(0, 1);
            FUZZ_CHECK(next.has_value() == (route.upstreams.size() > 1));
            if (next)
                FUZZ_CHECK(*next > 0 && *next < route.upstreams.size());
        }
    }
    FUZZ_CHECK(table.size() == hosts.size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check_host_header(text.substr(0, text.find('\n')));
    auto table = parse_routes(text, "routes.json");
    if (table)
        check_table(*table);
    else
        FUZZ_CHECK(table.error().message.rfind("routes.json: ", 0) == 0);
    return 0;
}
