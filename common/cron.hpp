#pragma once
// [[cron]] schedules: 5-field cron syntax (minute hour day-of-month month
// day-of-week, Vixie cron's rules) and the next due time in an IANA timezone
// (docs/cron.md). The timezone database is the OS's (date/tz.h, USE_OS_TZDB).

#include <common/result.hpp>

#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace common {

struct CronSchedule {
    std::bitset<60> minutes;
    std::bitset<24> hours;
    std::bitset<32> days;       // 1..31
    std::bitset<13> months;     // 1..12
    std::bitset<7> weekdays;    // 0 (Sunday)..6; 7 is read as 0
    bool days_star = false;     // the day-of-month field starts with '*'
    bool weekdays_star = false; // the day-of-week field starts with '*'
    bool hours_star = false;    // the hour field starts with '*' (runs in a repeated hour too)
};

using SysMinutes = std::chrono::time_point<std::chrono::system_clock, std::chrono::minutes>;

// "*/5 9-17 * * mon-fri", "@daily". ErrorKind::usage with what is wrong.
Result<CronSchedule> parse_cron_schedule(std::string_view text);

// An IANA name the OS tz database knows ("UTC", "Europe/Paris").
bool is_valid_timezone(std::string_view name);

// The first due minute strictly after `after`, with the schedule read in
// `timezone` (an unknown one is UTC); nullopt when none comes in the next 8
// years (0 0 31 2 *). DST: a local time skipped by a spring-forward change
// runs once, at the instant of the change; a local time that happens twice in
// a fall-back change runs at its first occurrence only, unless the hour field
// is '*' (an hourly or every-minute job runs in both hours, as Vixie cron).
std::optional<SysMinutes> next_cron_time(const CronSchedule& schedule, std::string_view timezone,
                                         SysMinutes after);

} // namespace common
