#include <agent/auth/login_throttle.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace agent::auth {

namespace {

bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool is_plain(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '_' || c == '-';
}

} // namespace

std::string failed_logins_line(const FailedLogins& s) {
    return fmt::format("auth: {} failed logins from {} in the last {}s, last token name prefix {}",
                       s.count, s.address, s.span.count(),
                       s.token_prefix.empty() ? "(none)" : s.token_prefix + "…");
}

std::string token_prefix(std::string_view token) {
    if (token.empty())
        return {};
    constexpr std::string_view k_ours = "dpa_";
    std::string out;
    if (token.substr(0, k_ours.size()) == k_ours) {
        out = k_ours;
        for (std::size_t i = k_ours.size();
             i < token.size() && out.size() < k_ours.size() + 12 && is_hex(token[i]); ++i)
            out += token[i];
        return out;
    }
    for (std::size_t i = 0; i < token.size() && out.size() < 4 && is_plain(token[i]); ++i)
        out += token[i];
    return out.empty() ? "(unprintable)" : out;
}

LoginThrottle::LoginThrottle(ThrottleSettings settings, Clock clock)
    : m_settings(settings), m_clock(std::move(clock)) {}

LoginThrottle::TimePoint LoginThrottle::now() const {
    return m_clock ? m_clock() : std::chrono::steady_clock::now();
}

std::optional<std::chrono::seconds> LoginThrottle::blocked(const std::string& address) {
    std::lock_guard lock(m_mutex);
    const auto it = m_entries.find(address);
    if (it == m_entries.end())
        return std::nullopt;
    const auto t = now();
    if (t >= it->second.blocked_until)
        return std::nullopt;
    return std::max(std::chrono::seconds(1),
                    std::chrono::ceil<std::chrono::seconds>(it->second.blocked_until - t));
}

FailedLogins LoginThrottle::close(const std::string& address, Entry& e, TimePoint t) {
    FailedLogins s;
    s.address = address;
    s.count = e.count;
    s.span = std::clamp(std::chrono::ceil<std::chrono::seconds>(t - e.window_start),
                        std::chrono::seconds(1), m_settings.window);
    s.token_prefix = e.token_prefix;
    s.method = e.method;
    s.path = e.path;
    s.status = e.status;
    e.open = false;
    e.count = 0;
    e.failures = 0;
    e.last_line = t;
    return s;
}

// Nothing to remember: no open window, no block, no recent offence, and no
// line so recent that a new one would come within the same minute.
void LoginThrottle::forget_idle(TimePoint t) {
    for (auto it = m_entries.begin(); it != m_entries.end();) {
        const auto& e = it->second;
        const bool idle = !e.open && t >= e.blocked_until &&
                          (e.offences == 0 || t - e.blocked_until > m_settings.max_block) &&
                          (!e.last_line || t - *e.last_line >= m_settings.window);
        it = idle ? m_entries.erase(it) : std::next(it);
    }
}

LoginThrottle::Entry* LoginThrottle::entry_for(const std::string& address, TimePoint t) {
    if (auto it = m_entries.find(address); it != m_entries.end())
        return &it->second;
    if (m_entries.size() >= k_max_addresses && t - m_last_prune >= std::chrono::seconds(1)) {
        forget_idle(t);
        m_last_prune = t;
    }
    if (m_entries.size() >= k_max_addresses)
        return &m_entries[std::string(k_other_addresses)];
    return &m_entries[address];
}

std::optional<FailedLogins> LoginThrottle::failed(const LoginFailure& f) {
    std::lock_guard lock(m_mutex);
    const auto t = now();
    Entry& e = *entry_for(f.address, t);
    // The key counted under: the address, or k_other_addresses when full.
    const std::string& key =
        m_entries.count(f.address) ? f.address : std::string(k_other_addresses);
    std::optional<FailedLogins> due;
    if (e.open && t - e.window_start >= m_settings.window)
        due = close(key, e, t);
    if (!e.open) {
        e.open = true;
        e.window_start = t;
    }
    ++e.count;
    if (f.status != 429)
        ++e.failures;
    e.token_prefix = f.token_prefix;
    e.method = f.method;
    e.path = f.path;
    e.status = f.status;
    // Never a bucket of several clients: "(other addresses)", or "" (an
    // address the kernel did not give).
    const bool may_block = m_settings.limit > 0 && !key.empty() && key != k_other_addresses;
    if (may_block && f.status != 429 && e.failures >= m_settings.limit && t >= e.blocked_until) {
        if (e.offences > 0 && t - e.blocked_until > m_settings.max_block)
            e.offences = 0; // an hour of good behaviour since the last block
        ++e.offences;
        auto length = m_settings.first_block;
        for (int i = 1; i < e.offences && length < m_settings.max_block; ++i)
            length *= 2;
        e.blocked_until = t + std::min(length, m_settings.max_block);
        e.failures = 0;
        // Said at once (fail2ban acts sooner), unless a line went out less
        // than a minute ago: then at the end of this minute.
        if (!due && (!e.last_line || t - *e.last_line >= m_settings.window))
            due = close(key, e, t);
    }
    return due;
}

std::vector<FailedLogins> LoginThrottle::due() {
    std::lock_guard lock(m_mutex);
    const auto t = now();
    std::vector<FailedLogins> out;
    for (auto& [address, e] : m_entries)
        if (e.open && t - e.window_start >= m_settings.window)
            out.push_back(close(address, e, t));
    forget_idle(t);
    return out;
}

std::vector<FailedLogins> LoginThrottle::flush() {
    std::lock_guard lock(m_mutex);
    const auto t = now();
    std::vector<FailedLogins> out;
    for (auto& [address, e] : m_entries)
        if (e.open)
            out.push_back(close(address, e, t));
    return out;
}

std::size_t LoginThrottle::tracked() {
    std::lock_guard lock(m_mutex);
    return m_entries.size();
}

} // namespace agent::auth
