#pragma once
// The time stamp at the start of every line of an app's log (the process
// engine's writer, deploy-agent log-redact, and the container engine's log
// pump both put it there): "2026-12-04T23:23:14.123456Z " (RFC 3339, UTC,
// microseconds, then one space), k_stamp_size bytes. A line without one (a
// log an older agent wrote) is all text and has no time.
//
// Fixed width, so stamps compare as strings in time order.

#include <common/timestamp.hpp>

#include <string>
#include <string_view>

namespace agent::logs {

inline constexpr std::size_t k_stamp_size = 28; // with its space

using common::Micros;
using common::now_micros;

// The stamp of a line written now, with its space.
std::string stamp_now();

// A log line split into its stamp (empty: none) and its text.
struct StampedLine {
    std::string_view stamp; // without the space
    std::string_view text;
};
StampedLine split_stamp(std::string_view line);

// The stamp's time (a stamp as split_stamp returns it).
Micros stamp_time(std::string_view stamp);

// A line of `docker logs --timestamps` (or podman's): its time (any RFC 3339
// form, converted to UTC), a space, the text; given as a stamped log line.
// A line that does not start with a time is stamped `now`.
std::string restamp(std::string_view line, Micros now);

// Puts a stamp (of the time each line's first byte arrived) at the start of
// every line of a stream that comes in pieces.
class LineStamper {
  public:
    // Appends `data` to `out`, stamped.
    void stamp(std::string_view data, std::string& out, Micros now);

  private:
    bool m_at_line_start = true;
};

} // namespace agent::logs
