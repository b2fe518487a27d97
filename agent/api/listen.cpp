#include <agent/api/listen.hpp>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <charconv>

namespace agent::api {

namespace {

bool is_ip_literal(const std::string& host) {
    unsigned char buffer[sizeof(in6_addr)];
    return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
           ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

} // namespace

common::Result<ListenAddress> parse_listen_address(std::string_view text) {
    auto bad = [&](std::string_view why) {
        return common::make_error(common::ErrorKind::usage,
                                  fmt::format("invalid listen address '{}': {} (expected "
                                              "HOST:PORT, e.g. 127.0.0.1:7070)",
                                              text, why));
    };
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
        return bad("no port");
    std::string host(text.substr(0, colon));
    const auto port_text = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (host == "localhost")
        host = "127.0.0.1";
    if (host.empty())
        return bad("no host");
    if (!is_ip_literal(host))
        return bad("the host must be an IP address");
    unsigned port = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        port > 65535)
        return bad("the port must be a number from 0 to 65535");
    return ListenAddress{host, static_cast<unsigned short>(port)};
}

} // namespace agent::api
