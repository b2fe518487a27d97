#include <agent/logs/filter.hpp>
#include <agent/logs/follow.hpp>
#include <agent/logs/stamp.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace {

using agent::logs::LineFilter;

LineFilter filter(const std::string& pattern) {
    auto compiled = LineFilter::compile(pattern);
    REQUIRE_MESSAGE(compiled.ok(), pattern);
    return std::move(*compiled);
}

std::vector<std::string> scan(const std::filesystem::path& file, const LineFilter& f,
                              std::uint64_t from = 0,
                              std::optional<std::uint64_t> to = std::nullopt,
                              std::uint64_t* end = nullptr) {
    std::vector<std::string> lines;
    auto stop = agent::logs::scan_lines(
        file, f,
        [&](std::string_view line) {
            lines.emplace_back(line);
            return true;
        },
        from, to);
    if (end)
        *end = stop;
    return lines;
}

// What LineReader gives, filtered line by line: what scan_lines must give too.
std::vector<std::string> line_by_line(const std::filesystem::path& file, const LineFilter& f) {
    agent::logs::LineReader reader(file);
    std::vector<std::string> lines;
    for (auto& line : reader.read_new_lines())
        if (f.matches(line))
            lines.push_back(std::move(line));
    return lines;
}

} // namespace

TEST_CASE("LineFilter: Perl patterns on one line, bad ones refused with the reason") {
    CHECK(filter("").all());
    CHECK(filter("").matches("anything"));
    CHECK(filter("time(out|d out)").matches("GET /x timed out after 5s"));
    CHECK_FALSE(filter("timeout").matches("TIMEOUT"));
    CHECK(filter("(?i)timeout").matches("TIMEOUT"));
    CHECK(filter("^GET ").matches("GET /"));
    CHECK_FALSE(filter("^GET ").matches(" GET /"));
    CHECK(filter("\\d{3}$").matches("status 503"));
    CHECK(filter("é.").matches("café!"));                 // UTF-8: one character each
    CHECK_FALSE(filter("caf.!").matches("caf\xff\xfe!")); // an invalid byte is no character
    CHECK(filter("\"status\":5\\d\\d").matches(R"({"status":502,"path":"/"})"));

    auto bad = LineFilter::compile("(unclosed");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().kind == common::ErrorKind::bad_request);
    CHECK(bad.error().message.find("grep: missing closing parenthesis at offset 9") == 0);
    auto long_one = LineFilter::compile(std::string(1001, 'a'));
    REQUIRE_FALSE(long_one.ok());
    CHECK(long_one.error().message.find("1001 bytes long") != std::string::npos);
    // A pattern that backtracks without end gives up on the line, and says no.
    CHECK_FALSE(filter("(a+)+$").matches(std::string(5000, 'a') + "b"));
}

TEST_CASE("scan_lines finds the lines a pattern matches, as a line-by-line search would") {
    test::TempDir dir;
    const auto file = dir.path() / "v1.app.log";
    std::mt19937 random(7); // fixed: the same file each run
    const std::vector<std::string> words = {"GET", "POST", "timeout", "ok",   "503",
                                            "é",   "",     "user=42", "\xff", "error"};
    std::string text;
    for (int i = 0; i < 60000; ++i) {
        const auto count = random() % 6;
        for (unsigned w = 0; w < count; ++w)
            text += words[random() % words.size()] + (w + 1 < count ? " " : "");
        text += "\n";
    }
    text += std::string(3 * agent::logs::k_max_line_length + 10, 'x') + " error\n"; // cut in 4
    text += "a partial last line with error"; // no '\n' yet: not read
    REQUIRE(common::atomic_write_file(file, text).ok());

    for (const std::string pattern :
         {"", "error", "^GET", "ok$", "\\d{3}", "(?i)TIMEOUT|user=\\d+", "é", "ok\\nGET", "\\s",
          "^$", "x{20} error", "x*",
          // a literal start: searched for first (memmem), then the pattern on its line
          "user=\\d", "timeouts?", "POST é*", "503 é", "GET POST", "error(?i)X*"}) {
        CAPTURE(pattern);
        auto f = filter(pattern);
        std::uint64_t end = 0;
        auto found = scan(file, f, 0, std::nullopt, &end);
        CHECK(found == line_by_line(file, f));
        CHECK(end == text.rfind('\n') + 1); // where a follower goes on
    }
    auto errors = scan(file, filter("error"));
    REQUIRE_FALSE(errors.empty());
    CHECK(errors.back() == std::string(10, 'x') + " error"); // the long line's last piece

    SUBCASE("from and to: a window of whole lines") {
        auto window = scan(file, filter(""), 4, 12);
        for (const auto& line : window)
            CHECK(text.find(line) != std::string::npos);
        std::uint64_t end = 0;
        scan(file, filter(""), 0, 100, &end);
        CHECK(end <= 100);
        CHECK(text[end - 1] == '\n');
    }
    SUBCASE("each stops the scan by saying false") {
        int calls = 0;
        agent::logs::scan_lines(file, filter("error"),
                                [&](std::string_view) { return ++calls < 3; });
        CHECK(calls == 3);
    }
    SUBCASE("a missing file has no lines") {
        CHECK(scan(dir.path() / "missing.log", filter("")).empty());
    }
}

TEST_CASE("scan_lines on stamped lines: the pattern sees each line's text, never its stamp") {
    test::TempDir dir;
    const auto file = dir.path() / "v1.app.log";
    std::mt19937 random(11);
    const std::vector<std::string> words = {"GET", "POST", "timeout", "00Z", "503",
                                            "Z",   "",     "2026",    "-12", "error"};
    std::string text;
    for (int i = 0; i < 30000; ++i) {
        if (random() % 10 != 0) // most lines stamped, some (an older agent's) not
            text += agent::logs::stamp_now();
        const auto count = random() % 5;
        for (unsigned w = 0; w < count; ++w)
            text += words[random() % words.size()] + (w + 1 < count ? " " : "");
        text += "\n";
    }
    REQUIRE(common::atomic_write_file(file, text).ok());
    for (const std::string pattern :
         {"", "error", "^GET", "^2026", "\\d{4}-", "Z ", "00Z", "2026", "^$", "\\AGET",
          "(?<=Z )GET", "(?<!\\d)503", "POST$", "T\\d\\d:", "\\s", "[^ ]+ error", "timeout\\z"}) {
        CAPTURE(pattern);
        auto f = filter(pattern);
        CHECK(scan(file, f) == line_by_line(file, f));
    }
    const auto stamp = agent::logs::stamp_now();
    CHECK(filter("^GET").matches(stamp + "GET /"));
    CHECK_FALSE(filter("^2026").matches(stamp + "GET /"));
    CHECK_FALSE(filter("\\d").matches(stamp + "GET /"));
    CHECK(filter("^2026").matches("2026 was a year")); // no stamp: all text
}

TEST_CASE("scan_text: lines in memory, the last one without its newline too") {
    std::vector<std::string> found;
    auto collect = [&](std::string_view line) {
        found.emplace_back(line);
        return true;
    };
    CHECK(agent::logs::scan_text("one\n\ntwo error\nthree error", filter("error"), collect));
    CHECK(found == std::vector<std::string>{"two error", "three error"});
    found.clear();
    CHECK(agent::logs::scan_text("a\nb\n", filter(""), collect));
    CHECK(found == std::vector<std::string>{"a", "b"});
    int calls = 0;
    CHECK_FALSE(agent::logs::scan_text("x\nx\nx\n", filter("x"),
                                       [&](std::string_view) { return ++calls < 2; }));
    CHECK(calls == 2);
    CHECK(agent::logs::scan_text("", filter("x"), collect));
}

TEST_CASE("PieceScanner: text in pieces gives the lines the whole text gives") {
    std::mt19937 random(11);
    std::string text;
    for (int i = 0; i < 3000; ++i)
        text += (random() % 3 ? "line error " : "line ") + std::to_string(i) + "\n";
    text += std::string(agent::logs::k_max_line_length + 5, 'y') + " error\n";
    text += "last error"; // no '\n'
    for (const std::string pattern : {"", "error", "^line \\d+$"}) {
        CAPTURE(pattern);
        auto f = filter(pattern);
        std::vector<std::string> whole, pieces;
        agent::logs::scan_text(text, f, [&](std::string_view line) {
            whole.emplace_back(line);
            return true;
        });
        agent::logs::PieceScanner scanner(f, [&](std::string_view line) {
            pieces.emplace_back(line);
            return true;
        });
        for (std::size_t at = 0; at < text.size();) {
            const std::size_t size = 1 + random() % 40000; // from 1 byte to many lines
            CHECK(scanner.feed(std::string_view(text).substr(at, size)));
            at += size;
        }
        CHECK(scanner.finish());
        CHECK(pieces == whole);
        CHECK(whole.back() == (pattern == "^line \\d+$" ? "line 2999" : "last error"));
    }
}
