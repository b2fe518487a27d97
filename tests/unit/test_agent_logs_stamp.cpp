#include <agent/logs/stamp.hpp>
#include <common/timestamp.hpp>

#include <doctest/doctest.h>

#include <string>

using agent::logs::LineStamper;
using agent::logs::split_stamp;
using common::format_micros;
using common::parse_rfc3339;
using common::parse_time_bound;

TEST_CASE("times: RFC 3339 in and out, microseconds, any zone") {
    const auto at = parse_rfc3339("2026-12-04T23:23:14.123456Z");
    REQUIRE(at);
    CHECK(*at == 1796426594123456LL);
    CHECK(format_micros(*at) == "2026-12-04T23:23:14.123456Z");
    CHECK(format_micros(0) == "1970-01-01T00:00:00.000000Z");
    CHECK(format_micros(-1) == "1969-12-31T23:59:59.999999Z");
    CHECK(format_micros(*parse_rfc3339("2024-02-29T12:00:00Z")) == "2024-02-29T12:00:00.000000Z");
    // Fewer or more fraction digits, offsets: the same instant in UTC.
    CHECK(parse_rfc3339("2026-12-04T23:23:14.123Z") == *at - 456);
    CHECK(parse_rfc3339("2026-12-04T23:23:14.123456789Z") == *at);
    CHECK(parse_rfc3339("2026-12-05T01:23:14.123456+02:00") == *at);
    CHECK(parse_rfc3339("2026-12-04T22:23:14.123456-01:00") == *at);
    CHECK(parse_rfc3339("2026-12-04T23:23:14Z") == *at - 123456);
    for (const char* bad :
         {"", "2026-12-04", "2026-12-04T23:23:14", "2026-13-04T00:00:00Z", "2026-12-04T24:00:00Z",
          "2026-12-04T23:23:14.Z", "2026-12-04T23:23:14Zjunk", "yesterday"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_rfc3339(bad));
    }
    // Fixed width: the strings sort as the times do.
    CHECK(format_micros(999999) < format_micros(1000000));
}

TEST_CASE("time bounds: a time, a date, or a duration before now") {
    const auto now = *parse_rfc3339("2026-12-04T12:00:00Z");
    CHECK(*parse_time_bound("1h", now) == now - 3600LL * 1000000);
    CHECK(*parse_time_bound("1h30m", now) == now - 5400LL * 1000000);
    CHECK(*parse_time_bound("2d", now) == now - 2 * 86400LL * 1000000);
    CHECK(*parse_time_bound("2026-12-04", now) == *parse_rfc3339("2026-12-04T00:00:00Z"));
    CHECK(*parse_time_bound("2026-12-04 10:30", now) == *parse_rfc3339("2026-12-04T10:30:00Z"));
    CHECK(*parse_time_bound("2026-12-04T10:30:15", now) == *parse_rfc3339("2026-12-04T10:30:15Z"));
    CHECK(*parse_time_bound("2026-12-04T10:30:15+01:00", now) ==
          *parse_rfc3339("2026-12-04T09:30:15Z"));
    auto bad = parse_time_bound("last tuesday", now);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message.find("'last tuesday' is neither a time") == 0);
    CHECK_FALSE(parse_time_bound("-1h", now));
    CHECK_FALSE(parse_time_bound("", now));
}

TEST_CASE("stamps: every line starts with its time; split gives it back") {
    LineStamper stamper;
    std::string out;
    const auto t1 = *parse_rfc3339("2026-12-04T10:00:00.000001Z");
    const auto t2 = *parse_rfc3339("2026-12-04T10:00:01Z");
    stamper.stamp("first\nsec", out, t1);
    stamper.stamp("ond\n\nthird", out, t2); // the line begun at t1 keeps t1; empty stays empty
    CHECK(out == "2026-12-04T10:00:00.000001Z first\n2026-12-04T10:00:00.000001Z second\n\n"
                 "2026-12-04T10:00:01.000000Z third");
    auto line = split_stamp("2026-12-04T10:00:00.000001Z first");
    CHECK(line.stamp == "2026-12-04T10:00:00.000001Z");
    CHECK(line.text == "first");
    CHECK(agent::logs::stamp_time(line.stamp) == t1);
    CHECK(split_stamp("2026-12-04T10:00:00.000001Z ").text.empty());
    // Not a stamp: all text.
    for (const char* text : {"plain", "2026-12-04T10:00:00.000001Zx", "2026-12-04T10:00:00Z rest",
                             "2026-12-04 10:00:00.000001Z x"}) {
        CAPTURE(text);
        CHECK(split_stamp(text).stamp.empty());
        CHECK(split_stamp(text).text == text);
    }
}

TEST_CASE("restamp: docker's and podman's time stamps become the log's") {
    const auto now = *parse_rfc3339("2026-12-04T12:00:00Z");
    CHECK(agent::logs::restamp("2026-12-04T10:00:00.123456789Z hello world", now) ==
          "2026-12-04T10:00:00.123456Z hello world");
    CHECK(agent::logs::restamp("2026-12-04T11:00:00.5+01:00 hi", now) ==
          "2026-12-04T10:00:00.500000Z hi");
    CHECK(agent::logs::restamp("no time here", now) == "2026-12-04T12:00:00.000000Z no time here");
    CHECK(agent::logs::restamp("", now) == "2026-12-04T12:00:00.000000Z ");
}
