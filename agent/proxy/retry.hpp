#pragma once
// Pure decisions of the upstream side, unit-tested without sockets: whether a
// failed request may be sent again (and where), and how often a 502/504 is
// logged.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace agent::proxy {

// What is known of a request whose upstream attempt just failed.
struct Attempt {
    bool idempotent = false;         // RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE
    bool reused = false;             // the attempt used a pooled keep-alive connection
    bool stale_retried = false;      // the one retry on a fresh connection was spent already
    bool request_written = false;    // some byte of the request went to an upstream (any attempt)
    bool body_consumed = false;      // body bytes were read from the client: they cannot be replayed
    bool got_response_bytes = false; // some byte of a response arrived
    bool timed_out = false;          // connect_timeout or read_timeout expired
};

enum class Retry {
    none,        // answer the client (502/504)
    fresh,       // the same upstream on a fresh connection (the pooled one was stale)
    next_upstream // the route's next untried upstream, if any
};

// A request is sent again only if that cannot make the app see it twice with
// an effect: nothing of it was written anywhere, or it is idempotent. A
// streamed body that was partly read from the client is never replayed, a
// request that got a byte of response or timed out is never retried.
inline bool may_replay(const Attempt& a) {
    return !a.body_consumed && (!a.request_written || a.idempotent);
}

inline Retry retry_after_failure(const Attempt& a) {
    if (a.got_response_bytes || a.timed_out || !may_replay(a)) {
        return Retry::none;
    }
    if (a.reused && !a.stale_retried) {
        return Retry::fresh;
    }
    return Retry::next_upstream;
}

// At most `per_second` 502/504 log lines per app and second; the count of
// the lines held back is reported with the next line logged for that app
// ("N more suppressed"). Thread-safe: every worker logs through one.
class LogLimiter {
  public:
    using Clock = std::chrono::steady_clock;
    explicit LogLimiter(unsigned per_second = 5) : m_per_second(per_second) {}

    struct Verdict {
        bool log = false;
        std::uint64_t suppressed = 0; // held back before this line (only when log)
    };

    Verdict admit(std::string_view app, Clock::time_point now = Clock::now()) {
        std::lock_guard lock(m_mutex);
        auto it = m_apps.find(app);
        if (it == m_apps.end()) {
            it = m_apps.emplace(std::string(app), State{}).first;
        }
        State& s = it->second;
        if (s.count == 0 || now - s.window >= std::chrono::seconds(1)) {
            s.window = now;
            s.count = 0;
        }
        if (s.count >= m_per_second) {
            ++s.suppressed;
            return {};
        }
        ++s.count;
        Verdict verdict{true, s.suppressed};
        s.suppressed = 0;
        return verdict;
    }

  private:
    struct State {
        Clock::time_point window{};
        unsigned count = 0;
        std::uint64_t suppressed = 0;
    };
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    unsigned m_per_second;
    std::mutex m_mutex;
    std::unordered_map<std::string, State, Hash, std::equal_to<>> m_apps;
};

// The one every session logs its 502/504 lines through.
inline LogLimiter& gateway_log_limiter() {
    static LogLimiter limiter;
    return limiter;
}

} // namespace agent::proxy
