#include <common/address.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace common {
namespace {

bool is_ip_literal(const std::string& host) {
    unsigned char buffer[16];
    return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
           inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

Error bad(std::string_view text, std::string_view why) {
    return make_error(ErrorKind::config,
                      "invalid address \"" + std::string(text) + "\": " + std::string(why));
}

} // namespace

Result<HostPort> parse_host_port(std::string_view text, EmptyHost empty) {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        return bad(text, "expected HOST:PORT");
    }
    std::string_view host = text.substr(0, colon);
    std::string_view port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string_view::npos) {
        return bad(text, "write IPv6 addresses as [ADDR]:PORT");
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
        return bad(text, "port must be a number from 0 to 65535");
    }
    HostPort result{std::string(host), static_cast<std::uint16_t>(value)};
    if (result.host.empty()) {
        if (empty == EmptyHost::refused) {
            return bad(text, "missing host");
        }
        return result;
    }
    if (!is_ip_literal(result.host)) {
        return bad(text, "host must be an IP address (names are not resolved)");
    }
    return result;
}

bool is_loopback_host(std::string_view host) {
    if (host == "localhost")
        return true;
    const std::string text(host);
    unsigned char v4[4];
    if (inet_pton(AF_INET, text.c_str(), v4) == 1)
        return v4[0] == 127;
    unsigned char v6[16];
    if (inet_pton(AF_INET6, text.c_str(), v6) != 1)
        return false;
    static constexpr unsigned char k_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 1};
    static constexpr unsigned char k_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(v6, v6 + 16, k_loopback))
        return true;
    return std::equal(v6, v6 + 12, k_mapped) && v6[12] == 127; // ::ffff:127.0.0.1
}

std::string url_host(std::string_view url) {
    const auto scheme = url.find("://");
    if (scheme == std::string_view::npos)
        return {};
    auto authority = url.substr(scheme + 3);
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (const auto at = authority.rfind('@'); at != std::string_view::npos)
        authority.remove_prefix(at + 1);
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos)
            return {};
        if (close + 1 < authority.size() && authority[close + 1] != ':') // "[::1].example"
            return std::string(authority);
        return std::string(authority.substr(1, close - 1));
    }
    return std::string(authority.substr(0, authority.find(':')));
}

std::string listen_failure(int error, std::string_view setting) {
    std::string out = std::strerror(error);
    const std::string elsewhere = "choose another address with " + std::string(setting);
    if (error == EADDRINUSE)
        out +=
            " (another program holds this port; `ss -ltnp` shows which): stop it, or " + elsewhere;
    else if (error == EACCES)
        out += " (ports below 1024 need CAP_NET_BIND_SERVICE, which the systemd unit grants): " +
               elsewhere;
    else if (error == EADDRNOTAVAIL)
        out += " (no interface of this machine has that address): " + elsewhere;
    return out;
}

} // namespace common
