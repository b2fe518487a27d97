#pragma once
// Each app's access log (docs/metrics.md, "Access log"): one NDJSON line per
// request the proxy routed to the app, written to DIR/APP/logs/access.ndjson
// and rotated by size to access.ndjson.1. Workers append lines to their own
// AccessBuffer (a short, uncontended lock, no I/O on the request path); the
// server's timer hands every buffer to AccessLogFiles four times a second.
// Also the X-Request-Id every forwarded request carries.

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace agent::proxy {

// What one access log line says about one request.
struct AccessRecord {
    std::string_view time; // RFC 3339, UTC, milliseconds
    std::string_view release;
    std::string_view instance; // "web.2", "static"; empty when no instance answered
    std::string_view upstream; // "127.0.0.1:41235"; empty when none was used
    std::string_view client;   // the client's IP
    std::string_view method;
    std::string_view host;
    std::string_view path; // the request target as sent, query included
    int status = 0;        // 0: no answer was sent (the client or the app went away)
    double duration_ms = 0;
    std::uint64_t bytes_in = 0;  // request body bytes read from the client
    std::uint64_t bytes_out = 0; // bytes written to the client
    std::string_view request_id;
};

// The record as one JSON object and '\n', appended to `out`. Strings are
// escaped as JSON; a byte over 0x7f is written as \u00XX (a request line is
// ASCII; whatever else a client sent still makes valid JSON).
void append_access_line(std::string& out, const AccessRecord& record);

// A client's X-Request-Id is passed on when it is 1..200 of [A-Za-z0-9._~+/=:-];
// any other is replaced by a new one.
bool acceptable_request_id(std::string_view value);

// New request ids: 32 lower-case hex digits (128 random bits). One per worker.
class RequestIds {
  public:
    RequestIds();
    // Writes the id into `out` (replacing its contents).
    void next(std::string& out);

  private:
    std::mt19937_64 m_random;
};

// Caches "2026-12-03T22:41:07." for the current second.
class AccessClock {
  public:
    // The current time as RFC 3339 UTC with milliseconds ("...07.123Z").
    std::string_view now();

  private:
    std::int64_t m_second = -1;
    std::string m_prefix;
    std::string m_text;
};

// One worker's lines, per app, waiting for the next flush.
class AccessBuffer {
  public:
    // Past this many bytes waiting (the flush is stuck), lines are dropped and counted.
    static constexpr std::size_t k_max_pending = 16 * 1024 * 1024;

    void append(const std::string& app, const AccessRecord& record);
    // Moves the waiting lines into `into` (appended per app) and returns the
    // number of lines dropped since the last call.
    std::uint64_t take(std::map<std::string, std::string>& into);

  private:
    std::mutex m_mutex;
    std::map<std::string, std::string, std::less<>> m_lines;
    std::size_t m_pending = 0;
    std::uint64_t m_dropped = 0;
    std::string m_line; // scratch
};

// Each worker's lines (as AccessBuffer::take gave them, per app, each worker's
// in the order its requests ended) merged per app into one time order, so
// a file reads oldest first whichever worker answered. Lines of one
// millisecond keep the order of `parts`. An app only one worker served
// keeps its text as it is (moved, not copied).
std::map<std::string, std::string>
merge_access_lines(std::vector<std::map<std::string, std::string>> parts);

// The files: DIR/APP/logs/access.ndjson for each app whose DIR/APP/logs
// exists (the proxy never creates an app's directory: a destroyed app's
// lines are dropped). Past `max_size` bytes the file becomes
// access.ndjson.1 (the previous .1 is removed) and a new one starts.
class AccessLogFiles {
  public:
    AccessLogFiles(std::filesystem::path dir, std::uint64_t max_size);
    ~AccessLogFiles();
    AccessLogFiles(const AccessLogFiles&) = delete;
    AccessLogFiles& operator=(const AccessLogFiles&) = delete;

    // Appends each app's lines to its file. Errors are logged once per app
    // until a write succeeds again.
    void write(const std::map<std::string, std::string>& lines);
    // Closes every file (the next write opens them again).
    void close_all();

    static std::filesystem::path file(const std::filesystem::path& dir, std::string_view app);

  private:
    struct Open {
        int fd = -1;
        std::uint64_t size = 0;
        bool failing = false;
    };
    bool open(const std::string& app, Open& file);
    void rotate(const std::string& app, Open& file);

    std::filesystem::path m_dir;
    std::uint64_t m_max_size;
    std::map<std::string, Open> m_files;
};

} // namespace agent::proxy
