#pragma once
// "127.0.0.1:7070", "[::1]:7070", "localhost:7070" -> an address to listen on
// (common::parse_host_port, with "localhost" read as 127.0.0.1).

#include <common/address.hpp>
#include <common/result.hpp>

#include <string>
#include <string_view>

namespace agent::api {

struct ListenAddress {
    std::string host; // an IP literal ("localhost" becomes 127.0.0.1)
    unsigned short port = 0;
};

// ErrorKind::usage with what was expected for anything else. With EmptyHost::allowed,
// ":80" is every address (host "").
common::Result<ListenAddress>
parse_listen_address(std::string_view text, common::EmptyHost empty = common::EmptyHost::refused);

} // namespace agent::api
