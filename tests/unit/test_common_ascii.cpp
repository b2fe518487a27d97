#include <common/ascii.hpp>

#include <doctest/doctest.h>

TEST_CASE("ascii_lower folds A-Z only, whatever the locale") {
    CHECK(common::ascii_lower("Host: EXAMPLE.com") == "host: example.com");
    CHECK(common::ascii_lower("@[`{") == "@[`{"); // the bytes around A-Z and a-z
    CHECK(common::ascii_lower("\xC3\x89T\xC3\x89") == "\xC3\x89t\xC3\x89"); // "ÉTÉ": UTF-8 kept
    CHECK(common::ascii_lower('Z') == 'z');
    CHECK(common::ascii_lower('\xC9') == '\xC9');
    CHECK(common::ascii_lower("") == "");
}

TEST_CASE("ascii_iequals: equal but for ASCII case") {
    CHECK(common::ascii_iequals("Content-Length", "content-length"));
    CHECK_FALSE(common::ascii_iequals("Content-Length", "content-lengths"));
    CHECK_FALSE(common::ascii_iequals("\xC3\x89", "\xC3\xA9")); // É and é: not ASCII
    CHECK(common::ascii_iequals("", ""));
    static_assert(common::ascii_iequals("ABC", "abc"));
}
