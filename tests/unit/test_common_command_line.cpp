// common/command_line: agent_command's word splitting and the quoting of the
// SSH exec command line.
#include <common/command_line.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

using common::shell_join;
using common::shell_quote;
using common::split_words;
using Words = std::vector<std::string>;

TEST_CASE("split_words splits on whitespace and honours quotes") {
    CHECK(*split_words("deploy-agent dial-stdio") == Words{"deploy-agent", "dial-stdio"});
    CHECK(*split_words("  a \t b\n c  ") == Words{"a", "b", "c"});
    CHECK(split_words("").value().empty());
    CHECK(split_words("   ").value().empty());
    SUBCASE("single quotes keep everything") {
        CHECK(*split_words("a '/srv/my dir/x' b") == Words{"a", "/srv/my dir/x", "b"});
        CHECK(*split_words(R"('a\b "c"')") == Words{R"(a\b "c")"});
        CHECK(*split_words("''") == Words{""});
    }
    SUBCASE("double quotes keep all but \\\" and \\\\") {
        CHECK(*split_words(R"("a b" "c\"d" "e\\f" "g\h")") == Words{"a b", "c\"d", "e\\f", "g\\h"});
        CHECK(*split_words("\"$HOME\"") == Words{"$HOME"}); // no expansion
    }
    SUBCASE("quotes join with the text around them") {
        CHECK(*split_words("--socket='/a b'/c") == Words{"--socket=/a b/c"});
    }
    SUBCASE("a backslash outside quotes keeps the next character") {
        CHECK(*split_words(R"(a\ b c)") == Words{"a b", "c"});
    }
    SUBCASE("errors") {
        for (const char* bad : {"a 'b", "a \"b", "a \"b\\\"", "a\\"}) {
            auto words = split_words(bad);
            REQUIRE_FALSE(words.ok());
            CHECK(words.error().kind == common::ErrorKind::config);
        }
        CHECK(split_words("'x").error().message.find("single quote") != std::string::npos);
        CHECK(split_words("\"x").error().message.find("double quote") != std::string::npos);
    }
}

TEST_CASE("shell_quote leaves plain words alone and single-quotes the rest") {
    CHECK(shell_quote("deploy-agent") == "deploy-agent");
    CHECK(shell_quote("/opt/deploy/bin/deploy-agent") == "/opt/deploy/bin/deploy-agent");
    CHECK(shell_quote("--socket=/run/a.sock") == "--socket=/run/a.sock");
    CHECK(shell_quote("") == "''");
    CHECK(shell_quote("a b") == "'a b'");
    CHECK(shell_quote("$(reboot)") == "'$(reboot)'");
    CHECK(shell_quote("it's") == "'it'\\''s'");
    CHECK(shell_join({"a", "b c", ";"}) == "a 'b c' ';'");
}

TEST_CASE("shell_join survives a real shell: every word arrives intact") {
    const Words words{"plain",       "two words", "it's",       "$HOME", "`id`",      "a\"b",
                      "back\\slash", "",          "semi;colon", "*",     "new\nline", "~"};
    std::string command = "printf '<%s>' " + shell_join(words);
    std::string quoted_for_sh = "sh -c " + shell_quote(command);
    FILE* pipe = ::popen(quoted_for_sh.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string out;
    std::array<char, 256> buffer{};
    while (auto n = std::fread(buffer.data(), 1, buffer.size(), pipe))
        out.append(buffer.data(), n);
    CHECK(::pclose(pipe) == 0);
    std::string expected;
    for (const auto& word : words)
        expected += "<" + word + ">";
    CHECK(out == expected);
}
