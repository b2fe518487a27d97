#pragma once
// deployctl logs --grep: a PCRE2 pattern, compiled once (JIT), matched against
// log lines; and reading a log file's lines through it. A file is searched as
// grep searches it: the pattern runs over large blocks, and only a line it
// lands in is then looked at on its own, so the cost is the pattern's search,
// not a call per line.

#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace agent::logs {

class LineFilter {
  public:
    // The longest pattern taken, in bytes.
    static constexpr std::size_t k_max_pattern = 1000;

    LineFilter(); // every line
    // bad_request (with PCRE2's reason and where in the pattern) for a pattern
    // that does not compile or is too long. "" is every line. Perl syntax, UTF-8
    // (an invalid byte in a line never matches a character), ^ and $ at each
    // line's ends; (?i) makes it case-insensitive. A line's time stamp
    // (stamp.hpp) is not part of what it matches.
    static common::Result<LineFilter> compile(const std::string& pattern);
    LineFilter(LineFilter&&) noexcept;
    LineFilter& operator=(LineFilter&&) noexcept;
    ~LineFilter();

    bool all() const { return !m_impl; }
    bool matches(std::string_view line) const;

  private:
    struct Impl;
    friend bool scan_text(std::string_view, const LineFilter&,
                          const std::function<bool(std::string_view)>&);
    // The first match at or after `from` in `text`: where it starts and ends.
    std::optional<std::pair<std::size_t, std::size_t>> search(std::string_view text,
                                                              std::size_t from) const;
    std::unique_ptr<Impl> m_impl;
};

// Gives `each` the non-empty lines of `text` (the last one need not end in
// '\n') that `filter` matches, in order, until `each` returns false; lines are
// cut as LineReader cuts them (k_max_line_length). False when `each` stopped it.
bool scan_text(std::string_view text, const LineFilter& filter,
               const std::function<bool(std::string_view)>& each);

// scan_text over text that comes in pieces (a decompressed stream,
// rotating_file.hpp's read_log_pieces): the same lines as for the whole text,
// holding only a partial line between pieces.
class PieceScanner {
  public:
    PieceScanner(const LineFilter& filter, std::function<bool(std::string_view)> each)
        : m_filter(filter), m_each(std::move(each)) {}
    // False once `each` stopped the scan.
    bool feed(std::string_view piece);
    // The last line, when the text does not end in '\n'.
    bool finish();

  private:
    const LineFilter& m_filter;
    std::function<bool(std::string_view)> m_each;
    std::string m_partial;
    bool m_going = true;
};

// Gives `each` the non-empty complete lines of `path` between `from` and `to`
// (default: its end) that `filter` matches, in order, until `each` returns
// false; lines are cut as LineReader cuts them (k_max_line_length). Returns the
// offset after the last complete line read: where a LineReader that follows
// the file goes on. A missing file has no lines.
std::uint64_t scan_lines(const std::filesystem::path& path, const LineFilter& filter,
                         const std::function<bool(std::string_view)>& each, std::uint64_t from = 0,
                         std::optional<std::uint64_t> to = std::nullopt);

} // namespace agent::logs
