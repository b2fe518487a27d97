#include <agent/proxy/upstream_pool.hpp>

#include <unordered_set>

namespace agent::proxy {
namespace {
// Kept idle as long as nginx keeps its upstream connections by default (60 s): an
// upstream that closes one sooner (Node after 5 s) is seen by the check made before a
// connection idle for a while is used (session_forward.ipp), and a request that finds
// one closed anyway is retried on a new connection.
constexpr auto k_max_idle_age = std::chrono::seconds(60);
} // namespace

UpstreamPtr UpstreamPool::take(std::string_view upstream) {
    auto it = m_idle.find(upstream);
    if (it == m_idle.end()) {
        return nullptr;
    }
    auto& idle = it->second;
    if (idle.empty()) {
        return nullptr;
    }
    UpstreamPtr connection = std::move(idle.back());
    idle.pop_back();
    // The newest is too old: so are the others.
    if (std::chrono::steady_clock::now() - connection->idle_since >= k_max_idle_age) {
        idle.clear();
        return nullptr;
    }
    return connection;
}

void UpstreamPool::give_back(std::string_view upstream, UpstreamPtr connection) {
    auto it = m_idle.find(upstream);
    if (it == m_idle.end()) {
        it = m_idle.emplace(std::string(upstream), std::deque<UpstreamPtr>{}).first;
    }
    if (it->second.size() >= m_max_idle) {
        return; // dropping the connection closes it
    }
    connection->reused = true;
    connection->idle_since = std::chrono::steady_clock::now();
    it->second.push_back(std::move(connection));
}

void UpstreamPool::sweep(std::chrono::steady_clock::time_point now) {
    for (auto& [upstream, idle] : m_idle) {
        while (!idle.empty() && now - idle.front()->idle_since >= k_max_idle_age) {
            idle.pop_front();
        }
    }
}

std::size_t UpstreamPool::idle() const {
    std::size_t count = 0;
    for (const auto& [upstream, idle] : m_idle) {
        count += idle.size();
    }
    return count;
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
