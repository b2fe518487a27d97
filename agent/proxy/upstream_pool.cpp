#include <agent/proxy/upstream_pool.hpp>

#include <unordered_set>

namespace agent::proxy {
namespace {
// Upstreams (Node, Python, Go servers) commonly close idle connections after
// 5 s or more; older ones are likely dead and would cost a retry.
constexpr auto k_max_idle_age = std::chrono::seconds(4);
} // namespace

UpstreamPtr UpstreamPool::take(std::string_view upstream) {
    auto it = m_idle.find(upstream);
    if (it == m_idle.end()) {
        return nullptr;
    }
    auto& idle = it->second;
    const auto now = std::chrono::steady_clock::now();
    while (!idle.empty()) {
        UpstreamPtr connection = std::move(idle.back());
        idle.pop_back();
        if (now - connection->idle_since < k_max_idle_age) {
            return connection;
        }
    }
    return nullptr;
}

void UpstreamPool::give_back(std::string_view upstream, UpstreamPtr connection) {
    auto it = m_idle.find(upstream);
    if (it == m_idle.end()) {
        it = m_idle.emplace(std::string(upstream), std::vector<UpstreamPtr>{}).first;
        it->second.reserve(m_max_idle);
    }
    if (it->second.size() >= m_max_idle) {
        return; // dropping the connection closes it
    }
    connection->reused = true;
    connection->idle_since = std::chrono::steady_clock::now();
    it->second.push_back(std::move(connection));
}

void UpstreamPool::retain_only(const RouteTable& table) {
    std::unordered_set<std::string_view> live;
    for (const Route& route : table.routes()) {
        for (const Upstream& upstream : route.upstreams) {
            live.insert(upstream.key);
        }
    }
    std::erase_if(m_idle, [&](const auto& entry) { return !live.contains(entry.first); });
}

} // namespace agent::proxy
