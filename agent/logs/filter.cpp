#include <agent/logs/filter.hpp>
#include <agent/logs/follow.hpp>
#include <agent/logs/stamp.hpp>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>

#include <cstring>
#include <fcntl.h>
#include <pcre2.h>
#include <sys/stat.h>
#include <unistd.h>

namespace agent::logs {

namespace {

// What one read brings in: whole lines in large blocks, as grep reads.
constexpr std::size_t k_block = 4 * 1024 * 1024;
// A pattern that backtracks without end gives up on that line (no match)
// instead of holding the agent's thread.
constexpr std::uint32_t k_match_limit = 1'000'000;
constexpr std::uint32_t k_heap_limit_kib = 20 * 1024;

// A string every match contains, when the pattern starts with one: its
// characters up to the first special one (none when it has an alternation
// anywhere, or starts with a special one), less a last character that a
// quantifier makes optional. grep's trick: memmem finds the few lines that
// can match, and only those go to the pattern.
std::string required_prefix(const std::string& pattern) {
    if (pattern.find('|') != std::string::npos)
        return {};
    const auto end = pattern.find_first_of("\\^$.|?*+()[]{}#");
    std::string prefix = pattern.substr(0, end);
    if (end != std::string::npos &&
        std::string_view("?*{").find(pattern[end]) != std::string_view::npos)
        while (!prefix.empty()) { // the whole UTF-8 character the quantifier applies to
            const auto byte = static_cast<unsigned char>(prefix.back());
            prefix.pop_back();
            if ((byte & 0xC0) != 0x80)
                break;
        }
    return prefix.size() >= 3 ? prefix : std::string();
}

// Whether what comes before a match in its line can decide it: ^, \A, \G,
// \z, \Z or a lookbehind. Such a pattern is matched line by line, on the text
// after each line's stamp (stamp.hpp); any other finds the same lines when it
// runs over a whole block of stamped lines, each found line then checked alone.
bool context_sensitive(const std::string& pattern) {
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] == '\\') {
            if (i + 1 < pattern.size() &&
                std::string_view("AGzZ").find(pattern[i + 1]) != std::string_view::npos)
                return true;
            ++i;
        } else if (pattern[i] == '^' && (i == 0 || pattern[i - 1] != '[')) {
            return true;
        } else if (pattern.compare(i, 4, "(?<=") == 0 || pattern.compare(i, 4, "(?<!") == 0) {
            return true;
        }
    }
    return false;
}

} // namespace

struct LineFilter::Impl {
    std::string literal;   // required_prefix
    bool per_line = false; // context_sensitive
    pcre2_code* code = nullptr;
    pcre2_match_data* data = nullptr;
    pcre2_match_context* context = nullptr;
    ~Impl() {
        pcre2_match_context_free(context);
        pcre2_match_data_free(data);
        pcre2_code_free(code);
    }
};

LineFilter::LineFilter() = default;
LineFilter::LineFilter(LineFilter&&) noexcept = default;
LineFilter& LineFilter::operator=(LineFilter&&) noexcept = default;
LineFilter::~LineFilter() = default;

common::Result<LineFilter> LineFilter::compile(const std::string& pattern) {
    LineFilter filter;
    if (pattern.empty())
        return filter;
    if (pattern.size() > k_max_pattern)
        return common::make_error(
            common::ErrorKind::bad_request,
            fmt::format("grep: the pattern is {} bytes long; the longest taken is {}",
                        pattern.size(), k_max_pattern));
    int error = 0;
    PCRE2_SIZE at = 0;
    auto impl = std::make_unique<Impl>();
    impl->code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                      PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_MULTILINE, &error, &at, nullptr);
    if (!impl->code) {
        PCRE2_UCHAR reason[256];
        pcre2_get_error_message(error, reason, sizeof reason);
        return common::make_error(common::ErrorKind::bad_request,
                                  fmt::format("grep: {} at offset {} of the pattern",
                                              reinterpret_cast<const char*>(reason), at));
    }
    // Without the JIT (a platform it does not know) the interpreter matches.
    (void)pcre2_jit_compile(impl->code, PCRE2_JIT_COMPLETE);
    impl->data = pcre2_match_data_create(1, nullptr);
    impl->context = pcre2_match_context_create(nullptr);
    if (!impl->data || !impl->context)
        return common::make_error(common::ErrorKind::internal, "grep: out of memory");
    pcre2_set_match_limit(impl->context, k_match_limit);
    pcre2_set_heap_limit(impl->context, k_heap_limit_kib);
    impl->literal = required_prefix(pattern);
    impl->per_line = context_sensitive(pattern);
    filter.m_impl = std::move(impl);
    return filter;
}

std::optional<std::pair<std::size_t, std::size_t>> LineFilter::search(std::string_view text,
                                                                      std::size_t from) const {
    const int rc = pcre2_match(m_impl->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(),
                               from, 0, m_impl->data, m_impl->context);
    if (rc < 0) // no match, or a limit reached
        return std::nullopt;
    const PCRE2_SIZE* span = pcre2_get_ovector_pointer(m_impl->data);
    return std::pair<std::size_t, std::size_t>{span[0], span[1]};
}

bool LineFilter::matches(std::string_view line) const {
    return all() || search(split_stamp(line).text, 0).has_value();
}

bool scan_text(std::string_view text, const LineFilter& filter,
               const std::function<bool(std::string_view)>& each) {
    bool going = true;
    // A line as LineReader gives it: one longer than k_max_line_length in pieces.
    auto deliver = [&](std::string_view line, bool matched) {
        while (going && line.size() > k_max_line_length) {
            auto piece = line.substr(0, k_max_line_length);
            if (filter.matches(piece))
                going = each(piece);
            line.remove_prefix(k_max_line_length);
        }
        if (going && !line.empty() && (matched || filter.matches(line)))
            going = each(line);
    };
    // The lines, without the last one's '\n'.
    const std::string_view region =
        !text.empty() && text.back() == '\n' ? text.substr(0, text.size() - 1) : text;
    if (filter.all() || filter.m_impl->per_line) {
        for (std::size_t at = 0; going && at <= region.size();) {
            auto stop = region.find('\n', at);
            if (stop == std::string_view::npos)
                stop = region.size();
            deliver(region.substr(at, stop - at), filter.all());
            at = stop + 1;
        }
        return going;
    }
    const std::string& literal = filter.m_impl->literal;
    for (std::size_t at = 0; going && at <= region.size();) {
        std::optional<std::pair<std::size_t, std::size_t>> found;
        if (!literal.empty()) { // a line that has it; the pattern decides below
            const void* hit =
                ::memmem(region.data() + at, region.size() - at, literal.data(), literal.size());
            if (hit)
                found.emplace(static_cast<const char*>(hit) - region.data(), region.size());
        } else {
            found = filter.search(region, at);
        }
        if (!found)
            break;
        const auto [start, stop] = *found;
        const void* newline =
            start > at ? ::memrchr(region.data() + at, '\n', start - at) : nullptr;
        const std::size_t line_start =
            newline ? static_cast<const char*>(newline) - region.data() + 1 : at;
        auto line_end = region.find('\n', start);
        if (line_end == std::string_view::npos)
            line_end = region.size();
        // A match that runs into the next line, or a stamped line (where it may
        // have matched the stamp), is looked at again on the line's text alone.
        const auto line = region.substr(line_start, line_end - line_start);
        const bool within =
            stop <= line_end && line.size() <= k_max_line_length && split_stamp(line).stamp.empty();
        deliver(line, within);
        at = line_end + 1;
    }
    return going;
}

bool PieceScanner::feed(std::string_view piece) {
    if (!m_going)
        return false;
    m_partial.append(piece);
    std::size_t done = 0;
    if (const auto last = m_partial.rfind('\n'); last != std::string::npos) {
        done = last + 1;
        m_going = scan_text(std::string_view(m_partial).substr(0, done), m_filter, m_each);
    }
    while (m_going && m_partial.size() - done >= k_max_line_length) { // a long line's pieces
        m_going = scan_text(std::string_view(m_partial).substr(done, k_max_line_length), m_filter,
                            m_each);
        done += k_max_line_length;
    }
    m_partial.erase(0, done);
    return m_going;
}

bool PieceScanner::finish() {
    if (m_going && !m_partial.empty())
        m_going = scan_text(m_partial, m_filter, m_each);
    m_partial.clear();
    return m_going;
}

std::uint64_t scan_lines(const std::filesystem::path& path, const LineFilter& filter,
                         const std::function<bool(std::string_view)>& each, std::uint64_t from,
                         std::optional<std::uint64_t> to) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return from;
    struct stat st {};
    const std::uint64_t size = ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    const std::uint64_t end = to ? std::min(*to, size) : size;
    bool going = true;
    std::string buffer(k_block, '\0');
    std::uint64_t pos = from; // the file offset of buffer[0]
    std::size_t have = 0;
    auto consume = [&](std::size_t bytes) {
        std::memmove(buffer.data(), buffer.data() + bytes, have - bytes);
        have -= bytes;
        pos += bytes;
    };
    while (going && pos + have < end) {
        const auto want = static_cast<std::size_t>(
            std::min<std::uint64_t>(buffer.size() - have, end - pos - have));
        const ssize_t got = ::pread(fd, buffer.data() + have, want, static_cast<off_t>(pos + have));
        if (got <= 0)
            break;
        have += static_cast<std::size_t>(got);
        if (const void* last = ::memrchr(buffer.data(), '\n', have)) {
            const auto complete =
                static_cast<std::size_t>(static_cast<const char*>(last) - buffer.data()) + 1;
            going = scan_text(std::string_view(buffer.data(), complete), filter, each);
            consume(complete);
        }
        while (going && have >= k_max_line_length) { // a long line's pieces so far
            going = scan_text(std::string_view(buffer.data(), k_max_line_length), filter, each);
            consume(k_max_line_length);
        }
    }
    ::close(fd);
    return pos;
}

} // namespace agent::logs
