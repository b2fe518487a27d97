#pragma once
// Durations ("500ms", "10s", "5m", "1h30m", "30d") and sizes ("512m", "1g", "64k").

#include <common/result.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace common {

Result<std::chrono::milliseconds> parse_duration(std::string_view text);
Result<std::uint64_t> parse_size(std::string_view text);
// "1.2s", "350ms", "2m05s": for people.
std::string format_duration(std::chrono::milliseconds d);
// "512m", "1g": the shortest exact unit, as deploy.toml writes sizes.
std::string format_size(std::uint64_t bytes);
// "512 B", "3.4 KiB", "1.2 MiB": for people.
std::string format_bytes(std::uint64_t bytes);

} // namespace common
