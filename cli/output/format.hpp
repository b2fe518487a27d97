#pragma once
// Small formatting helpers for human output.

#include <cstdint>
#include <string>
#include <string_view>

namespace cli::output {

// "512 B", "3.4 KiB", "1.2 MiB".
std::string format_bytes(std::uint64_t bytes);
// "3f2c1a0" from a full sha.
std::string short_commit(std::string_view sha);
// "2026-11-23 09:00:00" from "2026-11-23T09:00:00.000Z".
std::string short_time(std::string_view rfc3339);
// "3.2s", "1m05s".
std::string format_elapsed(std::int64_t ms);

} // namespace cli::output
