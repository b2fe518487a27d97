#include <agent/api/listen.hpp>
#include <common/address.hpp>

#include <fmt/format.h>

namespace agent::api {

common::Result<ListenAddress> parse_listen_address(std::string_view text, common::EmptyHost empty) {
    std::string spelled(text);
    if (const auto colon = text.rfind(':');
        colon != std::string_view::npos && text.substr(0, colon) == "localhost")
        spelled = "127.0.0.1" + spelled.substr(colon);
    auto parsed = common::parse_host_port(spelled, empty);
    if (!parsed)
        return common::make_error(
            common::ErrorKind::usage,
            fmt::format("invalid listen address: {} (expected HOST:PORT, e.g. 127.0.0.1:7070)",
                        parsed.error().message));
    return ListenAddress{parsed->host, parsed->port};
}

} // namespace agent::api
