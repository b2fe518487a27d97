#include <agent/proxy/static_files.hpp>

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cstdlib>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>
#include <variant>

namespace agent::proxy {
namespace {

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

bool istarts_with(std::string_view text, std::string_view prefix) {
    return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    return text;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = lower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

// Percent-decodes one raw segment; false on anything parse_url_path refuses.
bool decode_segment(std::string_view raw, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        if (c == '%') {
            if (i + 2 >= raw.size()) {
                return false;
            }
            const int high = hex_value(raw[i + 1]);
            const int low = hex_value(raw[i + 2]);
            if (high < 0 || low < 0) {
                return false;
            }
            c = static_cast<char>(high * 16 + low);
            i += 2;
        }
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f || c == '/' || c == '\\') {
            return false;
        }
        out.push_back(c);
    }
    return out != "..";
}

// The path part of a request-target: origin-form, or absolute-form as a
// client may send it to a proxy. Empty when it is neither.
std::string_view target_path(std::string_view target) {
    for (std::string_view scheme : {"http://", "https://"}) {
        if (istarts_with(target, scheme)) {
            auto slash = target.find('/', scheme.size());
            target = slash == std::string_view::npos ? "/" : target.substr(slash);
        }
    }
    if (target.empty() || target.front() != '/') {
        return {};
    }
    return target.substr(0, target.find_first_of("?#"));
}

struct Resolved {
    FileHandle file;
    struct stat st {};
    std::string path; // real path, for the content type and the .gz variant
};

// realpath(candidate) when it exists and lies inside real_root.
std::optional<std::string> inside_root(const std::string& real_root, const std::string& candidate) {
    std::unique_ptr<char, decltype(&std::free)> real(::realpath(candidate.c_str(), nullptr),
                                                     &std::free);
    if (!real) {
        return std::nullopt;
    }
    std::string_view path(real.get());
    const bool inside =
        path == real_root || real_root == "/" ||
        (path.size() > real_root.size() && path.substr(0, real_root.size()) == real_root &&
         path[real_root.size()] == '/');
    return inside ? std::optional<std::string>(path) : std::nullopt;
}

// Opens a regular file inside the root (O_NONBLOCK: a FIFO never blocks us).
std::optional<Resolved> open_inside(const std::string& real_root, const std::string& candidate) {
    auto path = inside_root(real_root, candidate);
    if (!path) {
        return std::nullopt;
    }
    Resolved found;
    found.file = FileHandle(::open(path->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!found.file || ::fstat(found.file.get(), &found.st) != 0 || !S_ISREG(found.st.st_mode)) {
        return std::nullopt;
    }
    found.path = std::move(*path);
    return found;
}

StaticReply plain(unsigned status, std::string body) {
    StaticReply reply;
    reply.status = status;
    reply.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
    reply.body = std::move(body);
    return reply;
}

std::string join(const std::string& root, const std::vector<std::string>& segments) {
    std::string path = root;
    for (const auto& segment : segments) {
        path += '/';
        path += segment;
    }
    return path;
}

// The file a URL path names: the file itself, a directory's index.html, or
// the SPA fallback. A reply when it is a redirect or an error instead.
std::variant<Resolved, StaticReply> locate(const std::string& real_root, const StaticSite& site,
                                           const UrlPath& url, std::string_view target) {
    const std::string candidate = join(real_root, url.segments);
    if (auto real = inside_root(real_root, candidate)) {
        struct stat st {};
        if (::stat(real->c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
            if (!url.trailing_slash && !url.segments.empty()) {
                auto reply = plain(301, "moved to a directory\n");
                auto query = target.find('?');
                reply.headers.emplace_back("Location",
                                           url_path_string(url) + "/" +
                                               std::string(query == std::string_view::npos
                                                               ? std::string_view()
                                                               : target.substr(query)));
                return reply;
            }
            if (auto index = open_inside(real_root, *real + "/index.html")) {
                return std::move(*index);
            }
            return plain(404, "not found\n");
        }
        if (!url.trailing_slash) {
            if (auto file = open_inside(real_root, *real)) {
                return std::move(*file);
            }
        }
        return plain(404, "not found\n");
    }
    if (site.spa && (url.segments.empty() || !has_extension(url.segments.back()))) {
        if (auto index = open_inside(real_root, real_root + "/index.html")) {
            return std::move(*index);
        }
    }
    return plain(404, "not found\n");
}

std::int64_t mtime_ns(const struct stat& st) {
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// If-Range: the range applies only while the representation is unchanged.
bool if_range_holds(std::string_view if_range, std::string_view etag, std::time_t mtime) {
    if_range = trim(if_range);
    if (if_range.empty()) {
        return true;
    }
    if (if_range.front() == '"') {
        return if_range == etag; // strong comparison
    }
    auto date = parse_http_date(if_range);
    return date && *date == mtime;
}

bool not_modified(const StaticRequest& request, std::string_view etag, std::time_t mtime) {
    if (!request.if_none_match.empty()) {
        return etag_matches(request.if_none_match, etag);
    }
    if (!request.if_modified_since.empty()) {
        auto since = parse_http_date(request.if_modified_since);
        return since && mtime <= *since;
    }
    return false;
}

constexpr std::array<std::string_view, 7> k_days{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> k_months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

} // namespace

FileHandle& FileHandle::operator=(FileHandle&& other) noexcept {
    if (this != &other) {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
        m_fd = std::exchange(other.m_fd, -1);
    }
    return *this;
}

FileHandle::~FileHandle() {
    if (m_fd >= 0) {
        ::close(m_fd);
    }
}

std::optional<UrlPath> parse_url_path(std::string_view target) {
    std::string_view path = target_path(target);
    if (path.empty()) {
        return std::nullopt;
    }
    UrlPath url;
    url.trailing_slash = path.size() > 1 && path.back() == '/';
    std::string segment;
    while (!path.empty()) {
        path.remove_prefix(1); // the '/'
        auto end = path.find('/');
        std::string_view raw = path.substr(0, end);
        path = end == std::string_view::npos ? std::string_view() : path.substr(end);
        if (!decode_segment(raw, segment)) {
            return std::nullopt;
        }
        if (!segment.empty() && segment != ".") {
            url.segments.push_back(segment);
        }
    }
    return url;
}

std::string url_path_string(const UrlPath& path) {
    constexpr std::string_view k_safe = "-._~!$&'()*+,;=:@";
    std::string out;
    for (const auto& segment : path.segments) {
        out += '/';
        for (char c : segment) {
            const auto byte = static_cast<unsigned char>(c);
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                k_safe.find(c) != std::string_view::npos) {
                out += c;
            } else {
                out += fmt::format("%{:02X}", byte);
            }
        }
    }
    return out.empty() ? "/" : out;
}

std::string_view content_type(std::string_view filename) {
    static constexpr std::pair<std::string_view, std::string_view> k_types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"ico", "image/x-icon"},
        {"txt", "text/plain; charset=utf-8"},
        {"xml", "application/xml"},
        {"wasm", "application/wasm"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"pdf", "application/pdf"},
    };
    auto dot = filename.rfind('.');
    auto slash = filename.rfind('/');
    if (dot != std::string_view::npos && (slash == std::string_view::npos || dot > slash)) {
        auto extension = filename.substr(dot + 1);
        for (const auto& [name, type] : k_types) {
            if (iequals(extension, name)) {
                return type;
            }
        }
    }
    return "application/octet-stream";
}

bool has_extension(std::string_view segment) {
    auto dot = segment.rfind('.');
    return dot != std::string_view::npos && dot > 0 && dot + 1 < segment.size();
}

std::string make_etag(std::uint64_t size, std::int64_t mtime_ns) {
    return fmt::format("\"{:x}-{:x}\"", size, static_cast<std::uint64_t>(mtime_ns));
}

bool etag_matches(std::string_view if_none_match, std::string_view etag) {
    if (trim(if_none_match) == "*") {
        return true;
    }
    if (etag.substr(0, 2) == "W/") {
        etag.remove_prefix(2);
    }
    std::string_view rest = if_none_match;
    while (true) {
        auto open = rest.find('"');
        if (open == std::string_view::npos) {
            return false;
        }
        auto close = rest.find('"', open + 1);
        if (close == std::string_view::npos) {
            return false;
        }
        if (rest.substr(open, close - open + 1) == etag) { // "W/" before it is fine: weak match
            return true;
        }
        rest.remove_prefix(close + 1);
    }
}

std::string http_date(std::time_t time) {
    struct tm tm {};
    ::gmtime_r(&time, &tm);
    return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT", k_days[tm.tm_wday], tm.tm_mday,
                       k_months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::optional<std::time_t> parse_http_date(std::string_view text) {
    text = trim(text);
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    if (text.size() != 29 || text.substr(3, 2) != ", " || text.substr(25) != " GMT") {
        return std::nullopt;
    }
    auto number = [&](std::size_t at, std::size_t length) -> int {
        int value = -1;
        auto digits = text.substr(at, length);
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
        return (ec == std::errc() && end == digits.data() + digits.size()) ? value : -1;
    };
    struct tm tm {};
    tm.tm_mon = -1;
    for (std::size_t i = 0; i < k_months.size(); ++i) {
        if (text.substr(8, 3) == k_months[i]) {
            tm.tm_mon = static_cast<int>(i);
        }
    }
    tm.tm_mday = number(5, 2);
    tm.tm_year = number(12, 4) - 1900;
    tm.tm_hour = number(17, 2);
    tm.tm_min = number(20, 2);
    tm.tm_sec = number(23, 2);
    if (tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_year < 0 || tm.tm_hour < 0 || tm.tm_min < 0 ||
        tm.tm_sec < 0 || text[7] != ' ' || text[11] != ' ' || text[16] != ' ' || text[19] != ':' ||
        text[22] != ':') {
        return std::nullopt;
    }
    return ::timegm(&tm);
}

bool accepts_gzip(std::string_view accept_encoding) {
    double gzip = -1;
    double any = -1;
    while (!accept_encoding.empty()) {
        auto comma = accept_encoding.find(',');
        std::string_view item = accept_encoding.substr(0, comma);
        accept_encoding = comma == std::string_view::npos ? std::string_view()
                                                          : accept_encoding.substr(comma + 1);
        auto semicolon = item.find(';');
        std::string_view name = trim(item.substr(0, semicolon));
        double q = 1;
        if (semicolon != std::string_view::npos) {
            auto param = trim(item.substr(semicolon + 1));
            if (istarts_with(param, "q=")) {
                q = std::strtod(std::string(param.substr(2)).c_str(), nullptr);
            }
        }
        if (iequals(name, "gzip") || iequals(name, "x-gzip")) {
            gzip = q;
        } else if (name == "*") {
            any = q;
        }
    }
    return (gzip >= 0 ? gzip : any) > 0;
}

ByteRange parse_range(std::string_view header, std::uint64_t size) {
    header = trim(header);
    if (!istarts_with(header, "bytes=")) {
        return {};
    }
    std::string_view spec = trim(header.substr(6));
    auto dash = spec.find('-');
    if (dash == std::string_view::npos || spec.find(',') != std::string_view::npos) {
        return {};
    }
    auto parse = [](std::string_view digits, std::uint64_t& out) {
        digits = trim(digits);
        if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
            return false;
        }
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
        if (ec == std::errc::result_out_of_range) {
            out = UINT64_MAX;
        }
        return true;
    };
    std::uint64_t first = 0;
    std::uint64_t last = UINT64_MAX;
    const bool has_first = parse(spec.substr(0, dash), first);
    const bool has_last = parse(spec.substr(dash + 1), last);
    if ((!has_first && !trim(spec.substr(0, dash)).empty()) ||
        (!has_last && !trim(spec.substr(dash + 1)).empty()) || (!has_first && !has_last)) {
        return {};
    }
    if (!has_first) { // "-N": the last N bytes
        if (last == 0 || size == 0) {
            return {ByteRange::Kind::unsatisfiable};
        }
        return {ByteRange::Kind::satisfiable, size > last ? size - last : 0, size - 1};
    }
    if (has_last && last < first) {
        return {};
    }
    if (first >= size) {
        return {ByteRange::Kind::unsatisfiable};
    }
    return {ByteRange::Kind::satisfiable, first, std::min(last, size - 1)};
}

std::string_view StaticReply::header(std::string_view name) const {
    for (const auto& [key, value] : headers) {
        if (iequals(key, name)) {
            return value;
        }
    }
    return {};
}

StaticReply serve_static(const StaticSite& site, const StaticRequest& request) {
    if (request.method != "GET" && request.method != "HEAD") {
        auto reply = plain(405, "a static site answers GET and HEAD only\n");
        reply.headers.emplace_back("Allow", "GET, HEAD");
        return reply;
    }
    auto url = parse_url_path(request.target);
    if (!url) {
        return plain(400, "bad request path\n");
    }
    auto root = inside_root("/", std::string(site.root));
    if (!root) {
        return plain(404, "this site's files are missing\n");
    }
    auto located = locate(*root, site, *url, request.target);
    if (auto* reply = std::get_if<StaticReply>(&located)) {
        return std::move(*reply);
    }
    auto found = std::move(std::get<Resolved>(located));
    StaticReply reply;
    reply.headers.emplace_back("Content-Type", std::string(content_type(found.path)));
    if (auto gz = open_inside(*root, found.path + ".gz")) {
        reply.headers.emplace_back("Vary", "Accept-Encoding");
        if (accepts_gzip(request.accept_encoding)) {
            found = std::move(*gz);
            reply.headers.emplace_back("Content-Encoding", "gzip");
        }
    }
    const auto size = static_cast<std::uint64_t>(found.st.st_size);
    const std::time_t mtime = found.st.st_mtim.tv_sec;
    const std::string etag = make_etag(size, mtime_ns(found.st));
    reply.headers.emplace_back("ETag", etag);
    reply.headers.emplace_back("Last-Modified", http_date(mtime));
    if (not_modified(request, etag, mtime)) {
        reply.status = 304;
        return reply;
    }
    reply.headers.emplace_back("Accept-Ranges", "bytes");
    reply.length = size;
    if (!request.range.empty() && if_range_holds(request.if_range, etag, mtime)) {
        auto range = parse_range(request.range, size);
        if (range.kind == ByteRange::Kind::unsatisfiable) {
            auto refused = plain(416, "range not satisfiable\n");
            refused.headers.emplace_back("Content-Range", fmt::format("bytes */{}", size));
            return refused;
        }
        if (range.kind == ByteRange::Kind::satisfiable) {
            reply.status = 206;
            reply.offset = range.first;
            reply.length = range.last - range.first + 1;
            reply.headers.emplace_back(
                "Content-Range", fmt::format("bytes {}-{}/{}", range.first, range.last, size));
        }
    }
    reply.file = std::move(found.file);
    return reply;
}

} // namespace agent::proxy
