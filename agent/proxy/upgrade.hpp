#pragma once
// HTTP upgrades (WebSockets) in deploy-proxy: the pure decisions, without Beast,
// so that unit tests can include them (session_upgrade.ipp relays the bytes).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace agent::proxy {

namespace detail {
inline bool iequal(std::string_view a, std::string_view b) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [&](char x, char y) {
               return lower(x) == lower(y);
           });
}
inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}
// Whether the comma-separated list `list` has `token` (case-insensitive).
inline bool has_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        const auto comma = list.find(',');
        if (iequal(trim(list.substr(0, comma)), token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}
} // namespace detail

// The protocol a request asks to switch to (RFC 9110 §7.8), e.g. "websocket":
// its Upgrade value when it is HTTP/1.1 (`version` 11) and its Connection names
// "upgrade"; empty otherwise. h2c is not offered: such a request gets an empty
// answer and is forwarded as plain HTTP, its Upgrade stripped like any
// hop-by-hop field.
inline std::string upgrade_protocol(unsigned version, std::string_view connection,
                                    std::string_view upgrade) {
    upgrade = detail::trim(upgrade);
    if (version < 11 || upgrade.empty() || !detail::has_token(connection, "upgrade") ||
        detail::has_token(upgrade, "h2c")) {
        return {};
    }
    return std::string(upgrade);
}

// Follows the frame boundaries of one direction of a WebSocket connection
// (RFC 6455 §5.2) from the bytes passing through, without keeping them: so
// that the proxy can put a frame of its own (a close) between two frames.
class WebSocketFrames {
  public:
    void feed(const char* data, std::size_t size) {
        while (size > 0) {
            if (m_remaining > 0) {
                const auto skip =
                    static_cast<std::size_t>(std::min<std::uint64_t>(m_remaining, size));
                m_remaining -= skip;
                data += skip;
                size -= skip;
                continue;
            }
            m_header[m_header_size++] = static_cast<unsigned char>(*data++);
            --size;
            if (m_header_size < 2) continue;
            const unsigned length7 = m_header[1] & 0x7f;
            const std::size_t extended = length7 == 126 ? 2 : length7 == 127 ? 8 : 0;
            const std::size_t mask = (m_header[1] & 0x80) != 0 ? 4 : 0;
            if (m_header_size < 2 + extended + mask) continue;
            std::uint64_t length = length7;
            if (extended > 0) {
                length = 0;
                for (std::size_t i = 0; i < extended; ++i) length = (length << 8) | m_header[2 + i];
            }
            m_remaining = length;
            m_header_size = 0;
        }
    }
    // Between two frames (or before the first).
    bool at_boundary() const { return m_remaining == 0 && m_header_size == 0; }

  private:
    std::uint64_t m_remaining = 0; // payload bytes of the current frame still to come
    unsigned char m_header[14]{};
    std::size_t m_header_size = 0;
};

// A server's close frame, code 1001 "going away", no reason (unmasked).
inline constexpr std::string_view k_websocket_going_away{"\x88\x02\x03\xe9", 4};

} // namespace agent::proxy
