#pragma once
// Failed logins on the API's TCP listener, counted per client address: one
// summary per address and minute (for the log line fail2ban reads and the
// audit), and a refusal (429 + Retry-After) of an address that failed too
// often, for a time that doubles with each repeated offence
// (docs/security.md, "Failed logins"). Pure logic: the clock is injected;
// nothing here logs or writes.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace agent::auth {

struct ThrottleSettings {
    // Failed token checks (401) from one address within one counting minute
    // that start a block; 0 = count and log, never block.
    int limit = 20;
    std::chrono::seconds window{60};
    std::chrono::seconds first_block{60}; // doubled for each repeated offence...
    std::chrono::seconds max_block{3600}; // ...up to this; an hour without one forgets them
};

// One refused request from a TCP client.
struct LoginFailure {
    std::string address;      // Peer::address
    std::string token_prefix; // token_prefix() of what it sent
    std::string method;
    std::string path;
    int status = 401; // 401: the token check failed; 429: the address is blocked
};

// What one address did within one counting window: a log line and an audit row.
struct FailedLogins {
    std::string address;
    std::int64_t count = 0;        // requests refused, 401 and 429 alike
    std::chrono::seconds span{60}; // the time the count covers
    std::string token_prefix;      // of the last one
    std::string method;            // of the last one
    std::string path;
    int status = 401; // of the last one
};

// The summary line: "auth: 1234 failed logins from 203.0.113.9 in the last
// 60s, last token name prefix dpa_0123456789ab…" (packaging/fail2ban matches it).
std::string failed_logins_line(const FailedLogins& summary);

// What may be logged of a bearer token: "dpa_" and its public id (at most
// 12 hex digits) for one of ours, else at most its first 4 characters of
// [A-Za-z0-9._-]; "" when none was sent. Never a secret.
std::string token_prefix(std::string_view token);

class LoginThrottle {
  public:
    using Clock = std::function<std::chrono::steady_clock::time_point()>;
    // Addresses counted at once; beyond, failures are summed under
    // k_other_addresses, which is never blocked.
    static constexpr std::size_t k_max_addresses = 65536;
    static constexpr std::string_view k_other_addresses = "(other addresses)";

    explicit LoginThrottle(ThrottleSettings settings = {}, Clock clock = nullptr);

    const ThrottleSettings& settings() const { return m_settings; }

    // How long `address` is still refused (at least 1 s), or nullopt.
    std::optional<std::chrono::seconds> blocked(const std::string& address);

    // Counts a refused request. Returns the address's summary when one is due
    // now: its minute has ended, or this failure started a block and no line
    // was written for it in the last minute (never two within one window).
    // A 429 counts, but neither starts nor extends a block.
    std::optional<FailedLogins> failed(const LoginFailure& failure);

    // The summaries of the minutes that have ended; forgets what is over.
    std::vector<FailedLogins> due();

    // Every open count, its minute ended or not (at shutdown).
    std::vector<FailedLogins> flush();

    std::size_t tracked();

  private:
    using TimePoint = std::chrono::steady_clock::time_point;
    struct Entry {
        bool open = false; // a window counts
        TimePoint window_start{};
        std::int64_t count = 0;    // refused requests in the window
        std::int64_t failures = 0; // of them, failed token checks (401)
        std::string token_prefix, method, path;
        int status = 401;
        std::optional<TimePoint> last_line; // when its last summary was made
        TimePoint blocked_until{};
        int offences = 0;
    };

    TimePoint now() const;
    FailedLogins close(const std::string& address, Entry& entry, TimePoint now);
    Entry* entry_for(const std::string& address, TimePoint now);
    void forget_idle(TimePoint now);

    ThrottleSettings m_settings;
    Clock m_clock;
    std::mutex m_mutex;
    std::unordered_map<std::string, Entry> m_entries;
    TimePoint m_last_prune{}; // a full table is swept at most once a second
};

} // namespace agent::auth
