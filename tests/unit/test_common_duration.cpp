#include <common/duration.hpp>

#include <doctest/doctest.h>

using namespace std::chrono_literals;

TEST_CASE("parse_duration accepts units and combinations") {
    CHECK(*common::parse_duration("500ms") == 500ms);
    CHECK(*common::parse_duration("10s") == 10s);
    CHECK(*common::parse_duration("1.5s") == 1500ms);
    CHECK(*common::parse_duration("5m") == 5min);
    CHECK(*common::parse_duration("1h30m") == 90min);
    CHECK(*common::parse_duration("30d") == std::chrono::hours(24 * 30));
}

TEST_CASE("parse_duration rejects what it cannot read") {
    for (const char* bad : {"", "10", "s", "10 s", "10x", "-1s", "1s2"}) {
        CAPTURE(bad);
        auto d = common::parse_duration(bad);
        REQUIRE_FALSE(d.ok());
        CHECK(d.error().kind == common::ErrorKind::config);
    }
}

TEST_CASE("parse_size accepts binary units") {
    CHECK(*common::parse_size("512") == 512);
    CHECK(*common::parse_size("64k") == 64 * 1024);
    CHECK(*common::parse_size("512m") == 512ull * 1024 * 1024);
    CHECK(*common::parse_size("1G") == 1024ull * 1024 * 1024);
    CHECK(*common::parse_size("2MiB") == 2ull * 1024 * 1024);
    CHECK_FALSE(common::parse_size("lots").ok());
    CHECK_FALSE(common::parse_size("1t").ok());
}

TEST_CASE("format_duration and format_size are readable") {
    CHECK(common::format_duration(350ms) == "350ms");
    CHECK(common::format_duration(1200ms) == "1.2s");
    CHECK(common::format_duration(5min) == "5m");
    CHECK(common::format_duration(125s) == "2m05s");
    CHECK(common::format_size(64ull * 1024 * 1024) == "64m");
    CHECK(common::format_size(1024ull * 1024 * 1024) == "1g");
    CHECK(common::format_size(1000) == "1000");
}
