#pragma once
// Minimal leveled logging to stderr for the daemons ("2026-11-23T09:00:00Z info: ...").

#include <string_view>

namespace common {

enum class LogLevel { debug, info, warn, error };

void set_log_level(LogLevel level);
void log(LogLevel level, std::string_view message);
inline void log_info(std::string_view m) {
    log(LogLevel::info, m);
}
inline void log_warn(std::string_view m) {
    log(LogLevel::warn, m);
}
inline void log_error(std::string_view m) {
    log(LogLevel::error, m);
}
inline void log_debug(std::string_view m) {
    log(LogLevel::debug, m);
}

// UTC timestamp, RFC 3339 with milliseconds: "2026-11-23T09:00:00.123Z".
std::string_view now_rfc3339(char (&buffer)[32]);

} // namespace common
