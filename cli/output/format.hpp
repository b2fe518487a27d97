#pragma once
// Small formatting helpers for human output.

#include <common/duration.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace cli::output {

// "512 B", "3.4 KiB", "1.2 MiB".
using common::format_bytes;
// "3f2c1a0" from a full sha.
std::string short_commit(std::string_view sha);
// "2026-11-23 09:00:00" from "2026-11-23T09:00:00.000Z".
std::string short_time(std::string_view rfc3339);
// "3.2s", "1m05s".
std::string format_elapsed(std::int64_t ms);
// The string at `key` of an agent's JSON answer; "" when it is not an object, has no such
// key, or holds something else there (an answer is never trusted to have the right shape).
std::string json_str(const nlohmann::json& object, const char* key);
// When a release object's release served (its "served" spans): "served 2026-11-23 09:00:00
// to 09:40:12, serving since 2026-11-23 10:02:00"; the last 3 spans, and how many before;
// "" when it never served.
std::string served_text(const nlohmann::json& release);
// Whether `key` of an agent's JSON answer holds true (false for anything else).
bool json_true(const nlohmann::json& object, const char* key);

} // namespace cli::output
