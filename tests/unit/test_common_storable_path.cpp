#include <common/storable_path.hpp>

#include <doctest/doctest.h>

#include <string>

using common::escape_path;
using common::find_path_flaw;
using common::is_storable_path;

TEST_CASE("is_storable_path refuses control characters, C0, DEL and C1") {
    struct Case {
        std::string path;
        std::size_t offset;
        const char* what;
    };
    for (const Case& c : {
             Case{"a\nb", 1, "a newline (U+000A)"}, Case{"a\tb", 1, "a tab (U+0009)"},
             Case{"ab\r", 2, "a carriage return (U+000D)"},
             Case{"x\x7f", 1, "a delete character (U+007F)"},
             Case{"\x1b[31mred", 0, "an escape character (U+001B)"},
             Case{std::string("a\0b", 3), 1, "a NUL byte (U+0000)"},
             Case{"a\x01", 1, "a control character (U+0001)"},
             Case{"a\x1f", 1, "a control character (U+001F)"},
             Case{"line\xc2\x85next", 4, "a control character (U+0085)"}, // NEL
             Case{"\xc2\x80", 0, "a control character (U+0080)"},
             Case{"d\xc3\xa9j\xc3\xa0/\xc2\x9b", 7, "a control character (U+009B)"}, // CSI
         }) {
        CAPTURE(escape_path(c.path));
        CHECK_FALSE(is_storable_path(c.path));
        auto flaw = find_path_flaw(c.path);
        REQUIRE(flaw);
        CHECK(flaw->offset == c.offset);
        CHECK(flaw->what == c.what);
    }
}

TEST_CASE("is_storable_path refuses bytes that are not valid UTF-8") {
    struct Case {
        std::string path;
        std::size_t offset;
    };
    for (const Case& c : {
             Case{"a\xff", 1}, // never in UTF-8
             Case{"\x80"
                  "abc",
                  0},                         // a lone continuation byte
             Case{"ab\xbf", 2},               // another one, at the end
             Case{"\xc0\xaf", 0},             // overlong "/"
             Case{"\xc1\xbf", 0},             // overlong, two bytes
             Case{"x\xe0\x80\xaf", 1},        // overlong "/", three bytes
             Case{"\xf0\x80\x80\xaf", 0},     // overlong "/", four bytes
             Case{"\xed\xa0\x80", 0},         // a UTF-16 surrogate (U+D800)
             Case{"\xf4\x90\x80\x80", 0},     // above U+10FFFF
             Case{"\xf5\x80\x80\x80", 0},     // a lead byte past F4
             Case{"\xe6\x97", 0},             // a sequence cut short at the end
             Case{"\xe6\x97x", 0},            // a sequence cut short by ASCII
             Case{"ok/\xc3", 3},              // a lead byte alone at the end
             Case{"\xc3\xa9\xc3\xc3\xa9", 2}, // é, a lead byte without its tail, é
         }) {
        CAPTURE(escape_path(c.path));
        auto flaw = find_path_flaw(c.path);
        REQUIRE(flaw);
        CHECK(flaw->offset == c.offset);
        CHECK(flaw->what == "bytes that are not valid UTF-8");
    }
}

TEST_CASE("is_storable_path accepts valid UTF-8 text, non-ASCII included") {
    for (const char* path : {"index.html", "caf\xc3\xa9.txt", "\xe6\x97\xa5\xe6\x9c\xac/a.md",
                             "emoji-\xf0\x9f\x9a\x80", "nbsp\xc2\xa0here", // U+00A0 is no control
                             "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf", "~tilde", " spaced name "}) {
        CAPTURE(path);
        CHECK(is_storable_path(path));
        CHECK(escape_path(path) == path);
    }
    CHECK(is_storable_path(""));
}

TEST_CASE("escape_path prints any path on one line") {
    CHECK(escape_path("a\nb") == "a\\nb");
    CHECK(escape_path("a\tb\r") == "a\\tb\\r");
    CHECK(escape_path("\x1b[31m") == "\\x1b[31m");
    CHECK(escape_path("x\x7f") == "x\\x7f");
    CHECK(escape_path(std::string("a\0b", 3)) == "a\\x00b");
    CHECK(escape_path("line\xc2\x85next") == "line\\u0085next");
    CHECK(escape_path("a\xff") == "a\\xff");
    CHECK(escape_path("\xc0\xaf") == "\\xc0\\xaf");
    CHECK(escape_path("\xe6\x97") == "\\xe6\\x97");
    CHECK(escape_path("say \"hi\"\\") == "say \\\"hi\\\"\\\\");
    CHECK(escape_path("caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac") ==
          "caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac");
}

TEST_CASE("invalid_utf8_offset finds the first byte that is not UTF-8") {
    CHECK_FALSE(common::invalid_utf8_offset("{\"path\": \"caf\xc3\xa9\n\"}"));
    CHECK(common::invalid_utf8_offset("{\"path\": \"a\xff\"}") == 11u);
    CHECK(common::invalid_utf8_offset("\xc0\xaf") == 0u);
}
