#include <common/address.hpp>

#include <doctest/doctest.h>

using common::EmptyHost;
using common::parse_host_port;

TEST_CASE("parse_host_port") {
    auto v4 = parse_host_port("127.0.0.1:8080");
    REQUIRE(v4.ok());
    CHECK(v4->host == "127.0.0.1");
    CHECK(v4->port == 8080);
    auto v6 = parse_host_port("[::1]:80");
    REQUIRE(v6.ok());
    CHECK(v6->host == "::1");
    CHECK_FALSE(parse_host_port(":8080").ok());
    auto any = parse_host_port(":8080", EmptyHost::allowed);
    REQUIRE(any.ok());
    CHECK(any->host.empty());
    CHECK_FALSE(parse_host_port("::1:80").ok());
    CHECK_FALSE(parse_host_port("example.com:80").ok());
    CHECK_FALSE(parse_host_port("127.0.0.1:http").ok());
    CHECK_FALSE(parse_host_port("127.0.0.1:").ok());
}
