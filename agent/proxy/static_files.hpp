#pragma once
// Serving a [static] release's files (docs/deploy-toml.md, [static]): the
// proxy answers from the release's directory itself. Pure logic and plain
// POSIX file access, no sockets: session_static.ipp turns a StaticReply into
// an HTTP response on the client connection.

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agent::proxy {

// A request path, percent-decoded and split: "/a/b%20c/" → {"a", "b c"},
// trailing slash. Never holds "", ".", ".." or a segment with '/', '\\' or NUL.
struct UrlPath {
    std::vector<std::string> segments;
    bool trailing_slash = false;
};

// The path of a request-target ("/a/b?x=1", or an absolute-form URL), with
// "." and empty segments dropped. nullopt means 400: a bad %-escape, an
// encoded '/', a NUL or control byte, a backslash or a ".." segment.
std::optional<UrlPath> parse_url_path(std::string_view target);
// "/a/b%20c/": the path again, each segment %-encoded where needed.
std::string url_path_string(const UrlPath& path);

// Content-Type by file extension (case-insensitive); application/octet-stream
// when unknown. Text types carry "; charset=utf-8".
std::string_view content_type(std::string_view filename);
// Whether the last path segment has an extension ("app.js" yes, "about" no).
bool has_extension(std::string_view segment);

// A strong validator from size and modification time: "\"<hex size>-<hex mtime ns>\"".
std::string make_etag(std::uint64_t size, std::int64_t mtime_ns);
// If-None-Match against our ETag: "*" or any listed tag, weak comparison.
bool etag_matches(std::string_view if_none_match, std::string_view etag);

// IMF-fixdate (RFC 9110 §5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
std::string http_date(std::time_t time);
std::optional<std::time_t> parse_http_date(std::string_view text);

// Whether Accept-Encoding allows gzip (gzip, x-gzip or *, with q > 0).
bool accepts_gzip(std::string_view accept_encoding);

// A Range header against a representation of `size` bytes. Only a single
// byte range is honoured; anything else (other units, several ranges, bad
// syntax) is ignored and the whole file is sent, as RFC 9110 §14.2 allows.
struct ByteRange {
    enum class Kind { none, satisfiable, unsatisfiable };
    Kind kind = Kind::none;
    std::uint64_t first = 0;
    std::uint64_t last = 0; // inclusive
};
ByteRange parse_range(std::string_view header, std::uint64_t size);

// An open file descriptor, closed on destruction.
class FileHandle {
  public:
    FileHandle() = default;
    explicit FileHandle(int fd) : m_fd(fd) {}
    FileHandle(FileHandle&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
    FileHandle& operator=(FileHandle&& other) noexcept;
    FileHandle(const FileHandle&) = delete;
    FileHandle& operator=(const FileHandle&) = delete;
    ~FileHandle();

    int get() const { return m_fd; }
    int release() { return std::exchange(m_fd, -1); }
    explicit operator bool() const { return m_fd >= 0; }

  private:
    int m_fd = -1;
};

struct StaticSite {
    std::string_view root; // absolute directory
    bool spa = false;
};

// The parts of the request that matter here (empty when absent).
struct StaticRequest {
    std::string_view method; // "GET", "HEAD", ...
    std::string_view target;
    std::string_view if_none_match;
    std::string_view if_modified_since;
    std::string_view range;
    std::string_view if_range;
    std::string_view accept_encoding;
};

struct StaticReply {
    unsigned status = 200;
    std::vector<std::pair<std::string, std::string>> headers; // not Content-Length
    std::string body;                                         // errors and redirects (text/plain)
    FileHandle file; // 200 and 206: the bytes [offset, offset + length) of it
    std::uint64_t offset = 0;
    std::uint64_t length = 0; // Content-Length of a file reply (also for HEAD)

    std::string_view header(std::string_view name) const;
};

// Answers one request from the files under site.root. The path never leaves
// the root: symlinks are resolved and must stay inside it.
StaticReply serve_static(const StaticSite& site, const StaticRequest& request);

} // namespace agent::proxy
