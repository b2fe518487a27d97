#include <common/address.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <string>

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

TEST_CASE("is_loopback_host: where plain HTTP is allowed") {
    for (const char* host : {"127.0.0.1", "127.255.0.9", "::1", "localhost", "::ffff:127.0.0.1"})
        CHECK_MESSAGE(common::is_loopback_host(host), host);
    for (const char* host : {"0.0.0.0", "::", "10.0.0.5", "128.0.0.1", "::2", "::ffff:10.0.0.1",
                             "agent.invalid", "localhost.invalid", "127.0.0.1.invalid", ""})
        CHECK_FALSE_MESSAGE(common::is_loopback_host(host), host);
}

TEST_CASE("listen_failure: the reason and what to do about it") {
    const std::string held = common::listen_failure(EADDRINUSE, "--proxy-listen");
    CHECK(held.starts_with("Address already in use"));
    CHECK(held.find("another program holds this port") != std::string::npos);
    CHECK(held.ends_with("choose another address with --proxy-listen"));
    CHECK(common::listen_failure(EACCES, "--listen").find("CAP_NET_BIND_SERVICE") !=
          std::string::npos);
    CHECK(common::listen_failure(EADDRNOTAVAIL, "--listen").ends_with("with --listen"));
    CHECK(common::listen_failure(EMFILE, "--listen") == std::strerror(EMFILE));
}

TEST_CASE("url_host: a URL's host, whatever follows or precedes it") {
    CHECK(common::url_host("http://127.0.0.1:8080/hello.git") == "127.0.0.1");
    CHECK(common::url_host("http://localhost/x") == "localhost");
    CHECK(common::url_host("http://localhost.evil.example/x") == "localhost.evil.example");
    CHECK(common::url_host("http://127.0.0.1.evil.example:80/x") == "127.0.0.1.evil.example");
    CHECK(common::url_host("http://127.0.0.1@evil.example/x") == "evil.example");
    CHECK(common::url_host("https://user:pw@host:443?q#f") == "host");
    CHECK(common::url_host("http://[::1]:8080/x") == "::1");
    CHECK(common::url_host("http://[::1].evil.example/x") == "[::1].evil.example");
    CHECK(common::url_host("http://[::1/x") == "");
    CHECK(common::url_host("no scheme") == "");
}
