#pragma once
// Idle keep-alive connections to the upstreams, per upstream address.
// Owned by one Worker and used from its thread only: no locks.

#include <agent/proxy/deadline_stream.hpp>
#include <agent/proxy/routes.hpp>

#include <boost/beast/core/flat_buffer.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <string_view>
#include <unordered_map>

namespace agent::proxy {

using Stream = DeadlineStream;

struct UpstreamConnection {
    explicit UpstreamConnection(const Executor& executor) : stream(executor) {}

    Stream stream;
    boost::beast::flat_buffer buffer; // bytes read but not parsed yet
    bool reused = false;              // came from the pool (may have been closed meanwhile)
    std::chrono::steady_clock::time_point idle_since;
};
using UpstreamPtr = std::unique_ptr<UpstreamConnection>;

class UpstreamPool {
  public:
    explicit UpstreamPool(std::size_t max_idle_per_upstream) : m_max_idle(max_idle_per_upstream) {}

    // The most recently used idle connection to `upstream`, or nullptr.
    UpstreamPtr take(std::string_view upstream);
    // Keeps `connection` for reuse (drops it when the pool for `upstream` is full).
    void give_back(std::string_view upstream, UpstreamPtr connection);
    // Drops idle connections to upstreams `table` no longer routes to.
    void retain_only(const RouteTable& table);
    // Closes the connections idle for longer than an upstream commonly keeps them
    // (k_max_idle_age, 60 s) at `now`.
    void sweep(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
    std::size_t idle() const;
    void clear() { m_idle.clear(); }

  private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::size_t m_max_idle;
    // Per upstream, oldest first: taken from the back (the most recently used, warm, and
    // least likely closed by the upstream), aged out from the front.
    std::unordered_map<std::string, std::deque<UpstreamPtr>, Hash, std::equal_to<>> m_idle;
};

} // namespace agent::proxy
