#pragma once
// Points in time as microseconds since the Unix epoch (UTC), and RFC 3339.

#include <common/result.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace common {

using Micros = std::int64_t;

Micros now_micros();
// "2026-12-04T23:23:14.123456Z": fixed width, so such strings sort in time order.
std::string format_micros(Micros at);
// RFC 3339 with any number of fraction digits (or none) and Z or an offset
// ("+02:00"); nullopt for anything else.
std::optional<Micros> parse_rfc3339(std::string_view text);
// A bound of a time range as people write it (deployctl logs --since/--until):
// an RFC 3339 time, a date ("2026-12-04") or a date and time without a zone
// ("2026-12-04 10:00", "2026-12-04T10:00:30"), both UTC, or a duration before
// `now` ("30m", "1h30m", "2d"). usage error for anything else.
Result<Micros> parse_time_bound(std::string_view text, Micros now);

} // namespace common
