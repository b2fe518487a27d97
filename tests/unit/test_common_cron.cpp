#include <common/config.hpp>
#include <common/cron.hpp>

#include <doctest/doctest.h>

#include <date/date.h>
#include <string>

namespace {

using common::SysMinutes;

// "2024-03-10 09:30" (UTC) as a minute.
SysMinutes at(const std::string& text) {
    int y = 0, mo = 0, d = 0, h = 0, mi = 0;
    REQUIRE(std::sscanf(text.c_str(), "%d-%d-%d %d:%d", &y, &mo, &d, &h, &mi) == 5);
    return SysMinutes(date::sys_days(date::year(y) / mo / d).time_since_epoch()) +
           std::chrono::hours(h) + std::chrono::minutes(mi);
}

std::string show(const std::optional<SysMinutes>& t) {
    return t ? date::format("%F %H:%M", *t) : std::string("none");
}

std::string next(const std::string& schedule, const std::string& after,
                 const std::string& zone = "UTC") {
    auto parsed = common::parse_cron_schedule(schedule);
    REQUIRE_MESSAGE(parsed.ok(), parsed.error().message);
    return show(common::next_cron_time(*parsed, zone, at(after)));
}

std::string error_of(const std::string& schedule) {
    auto parsed = common::parse_cron_schedule(schedule);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().kind == common::ErrorKind::usage);
    return parsed.error().message;
}

} // namespace

TEST_CASE("cron schedule: every field form") {
    auto s = common::parse_cron_schedule("*/15 9-17 1,15 jan-mar,DEC mon-fri");
    REQUIRE(s.ok());
    CHECK(s->minutes.count() == 4);
    CHECK(s->minutes[0]);
    CHECK(s->minutes[45]);
    CHECK_FALSE(s->minutes[10]);
    CHECK(s->hours.count() == 9);
    CHECK(s->days.count() == 2);
    CHECK(s->days[15]);
    CHECK(s->months.count() == 4);
    CHECK(s->months[12]);
    CHECK(s->weekdays.count() == 5);
    CHECK_FALSE(s->weekdays[0]);
    CHECK_FALSE(s->days_star);
    CHECK_FALSE(s->weekdays_star);

    auto sunday = common::parse_cron_schedule("0 0 * * 7");
    REQUIRE(sunday.ok());
    CHECK(sunday->weekdays[0]);
    CHECK(sunday->weekdays.count() == 1);
    auto ranged_step = common::parse_cron_schedule("10-30/10 */6 */10 * 1-5/2");
    REQUIRE(ranged_step.ok());
    CHECK(ranged_step->minutes.count() == 3);
    CHECK(ranged_step->hours.count() == 4);
    CHECK(ranged_step->days.count() == 4); // 1, 11, 21, 31
    CHECK(ranged_step->weekdays.count() == 3);
    auto start_step = common::parse_cron_schedule("5/20 * * * *");
    REQUIRE(start_step.ok());
    CHECK(start_step->minutes.count() == 3); // 5, 25, 45
    auto names = common::parse_cron_schedule("0 12 * Feb Sun,sat");
    REQUIRE(names.ok());
    CHECK(names->months[2]);
    CHECK(names->weekdays[0]);
    CHECK(names->weekdays[6]);
}

TEST_CASE("cron schedule: shortcuts") {
    CHECK(next("@hourly", "2024-01-01 10:20") == "2024-01-01 11:00");
    CHECK(next("@daily", "2024-01-01 10:20") == "2024-01-02 00:00");
    CHECK(next("@midnight", "2024-01-01 10:20") == "2024-01-02 00:00");
    CHECK(next("@weekly", "2024-01-01 10:20") == "2024-01-07 00:00"); // a Sunday
    CHECK(next("@monthly", "2024-01-01 10:20") == "2024-02-01 00:00");
    CHECK(next("@yearly", "2024-01-01 10:20") == "2025-01-01 00:00");
    CHECK(next("@annually", "2024-01-01 10:20") == "2025-01-01 00:00");
}

TEST_CASE("cron schedule: errors say what is wrong") {
    CHECK(error_of("* * * *").find("has 4 fields; it needs 5") != std::string::npos);
    CHECK(error_of("* * * * * *").find("has 6 fields") != std::string::npos);
    CHECK(error_of("60 * * * *") == "schedule minute field: 60 is out of range 0-59");
    CHECK(error_of("* 24 * * *") == "schedule hour field: 24 is out of range 0-23");
    CHECK(error_of("* * 0 * *") == "schedule day-of-month field: 0 is out of range 1-31");
    CHECK(error_of("* * * 13 *") == "schedule month field: 13 is out of range 1-12");
    CHECK(error_of("* * * * 8") == "schedule day-of-week field: 8 is out of range 0-7");
    CHECK(error_of("* * * foo *").find("\"foo\" is not a number or a name") != std::string::npos);
    CHECK(error_of("x * * * *").find("\"x\" is not a number") != std::string::npos);
    CHECK(error_of("30-10 * * * *").find("range 30-10 goes backwards") != std::string::npos);
    CHECK(error_of("*/0 * * * *").find("step 0 is out of range") != std::string::npos);
    CHECK(error_of("*/x * * * *").find("step \"x\" is not a number") != std::string::npos);
    CHECK(error_of("1,,2 * * * *").find("empty list item") != std::string::npos);
    CHECK(error_of("@reboot").find("is not one of @hourly") != std::string::npos);
    CHECK(error_of("").find("has 0 fields") != std::string::npos);
}

TEST_CASE("cron next run: minutes, hours, month ends and leap years") {
    CHECK(next("* * * * *", "2024-01-01 10:20") == "2024-01-01 10:21");
    CHECK(next("*/5 * * * *", "2024-01-01 10:20") == "2024-01-01 10:25");
    CHECK(next("0 * * * *", "2024-12-31 23:00") == "2025-01-01 00:00");
    CHECK(next("0 0 31 * *", "2024-04-01 00:00") == "2024-05-31 00:00"); // April has 30 days
    CHECK(next("0 0 30 * *", "2024-01-30 00:00") == "2024-03-30 00:00"); // no Feb 30
    CHECK(next("0 0 29 2 *", "2023-03-01 00:00") == "2024-02-29 00:00");
    CHECK(next("0 0 29 2 *", "2024-02-29 00:00") == "2028-02-29 00:00");
    CHECK(next("0 0 31 2 *", "2024-01-01 00:00") == "none");
    CHECK(next("15 10 * * *", "2024-01-01 10:15") == "2024-01-02 10:15");
}

TEST_CASE("cron next run: day-of-month and day-of-week (Vixie cron's OR rule)") {
    // 2024-01-01 is a Monday.
    // Both restricted: the 13th OR any Friday.
    CHECK(next("0 0 13 * fri", "2024-01-01 00:00") == "2024-01-05 00:00");
    CHECK(next("0 0 13 * fri", "2024-01-12 00:00") == "2024-01-13 00:00");
    // Day-of-week '*': only the day of the month.
    CHECK(next("0 0 13 * *", "2024-01-01 00:00") == "2024-01-13 00:00");
    // Day-of-month '*': only the weekday.
    CHECK(next("0 0 * * fri", "2024-01-01 00:00") == "2024-01-05 00:00");
    // A field starting with '*' counts as '*' (*/2 does not turn on the OR).
    CHECK(next("0 0 */2 * fri", "2024-01-01 00:00") == "2024-01-05 00:00"); // 5th: odd, Friday
    CHECK(next("0 0 * * 0", "2024-01-01 00:00") == "2024-01-07 00:00");
    CHECK(next("0 0 * * 7", "2024-01-01 00:00") == "2024-01-07 00:00");
}

TEST_CASE("cron next run: timezones") {
    // 09:00 in Paris (UTC+1 in winter, +2 in summer).
    CHECK(next("0 9 * * *", "2024-01-15 12:00", "Europe/Paris") == "2024-01-16 08:00");
    CHECK(next("0 9 * * *", "2024-07-15 12:00", "Europe/Paris") == "2024-07-16 07:00");
    CHECK(next("30 5 * * *", "2024-01-15 12:00", "Asia/Kolkata") == "2024-01-16 00:00");
    // The day in the zone decides: Monday 00:30 in Tokyo is Sunday 15:30 UTC.
    CHECK(next("30 0 * * mon", "2024-01-01 00:00", "Asia/Tokyo") == "2024-01-07 15:30");
    CHECK(common::is_valid_timezone("UTC"));
    CHECK(common::is_valid_timezone("America/New_York"));
    CHECK_FALSE(common::is_valid_timezone("Mars/Olympus"));
    CHECK_FALSE(common::is_valid_timezone(""));
}

TEST_CASE("cron next run: DST gaps and overlaps") {
    // New York springs forward on 2024-03-10: 02:00 EST becomes 03:00 EDT (07:00 UTC).
    SUBCASE("a job in the skipped hour runs once, at the change") {
        CHECK(next("30 2 * * *", "2024-03-10 00:00", "America/New_York") == "2024-03-10 07:00");
        CHECK(next("30 2 * * *", "2024-03-10 07:00", "America/New_York") == "2024-03-11 06:30");
    }
    SUBCASE("an every-minute job runs once at the change, then on") {
        CHECK(next("* * * * *", "2024-03-10 06:59", "America/New_York") == "2024-03-10 07:00");
        CHECK(next("* * * * *", "2024-03-10 07:00", "America/New_York") == "2024-03-10 07:01");
    }
    // It falls back on 2024-11-03: 02:00 EDT becomes 01:00 EST; 01:00-01:59 happens twice
    // (05:00-05:59 and 06:00-06:59 UTC).
    SUBCASE("a job at a repeated time runs at its first occurrence only") {
        CHECK(next("30 1 * * *", "2024-11-03 00:00", "America/New_York") == "2024-11-03 05:30");
        CHECK(next("30 1 * * *", "2024-11-03 05:30", "America/New_York") == "2024-11-04 06:30");
    }
    SUBCASE("an hourly job runs in both hours") {
        CHECK(next("30 * * * *", "2024-11-03 05:30", "America/New_York") == "2024-11-03 06:30");
        CHECK(next("* * * * *", "2024-11-03 05:59", "America/New_York") == "2024-11-03 06:00");
    }
}

TEST_CASE("parse_config: [[cron]] jobs") {
    SUBCASE("absent: none") {
        auto config = common::parse_config("app = \"a1\"\n", "deploy.toml");
        REQUIRE(config.ok());
        CHECK(config->cron.empty());
    }
    SUBCASE("two jobs, defaults") {
        auto config = common::parse_config(
            "app = \"a1\"\n[[cron]]\nname = \"clean-up\"\nschedule = \"*/5 * * * *\"\n"
            "command = \"./clean\"\n[[cron]]\nname = \"report\"\nschedule = \"@daily\"\n"
            "command = \"./report\"\ntimeout = \"5m\"\ntimezone = \"Europe/Paris\"\n",
            "deploy.toml");
        REQUIRE_MESSAGE(config.ok(), config.error().message);
        REQUIRE(config->cron.size() == 2);
        CHECK(config->cron[0].name == "clean-up");
        CHECK(config->cron[0].schedule == "*/5 * * * *");
        CHECK(config->cron[0].command == "./clean");
        CHECK(config->cron[0].timeout == std::chrono::hours(1));
        CHECK(config->cron[0].timezone == "UTC");
        CHECK(config->cron[1].timeout == std::chrono::minutes(5));
        CHECK(config->cron[1].timezone == "Europe/Paris");
    }
    struct Bad {
        const char* body;
        const char* message;
    };
    for (const Bad& bad : {
             Bad{"name = \"x\"\nschedule = \"61 * * * *\"\ncommand = \"c\"\n",
                 "deploy.toml:4:12: cron.schedule: schedule minute field: 61 is out of range"},
             Bad{"name = \"Bad_Name\"\nschedule = \"* * * * *\"\ncommand = \"c\"\n",
                 "deploy.toml:3:8: cron.name must be 1-63 lower-case letters"},
             Bad{"schedule = \"* * * * *\"\ncommand = \"c\"\n", "[[cron]] needs a name"},
             Bad{"name = \"x\"\ncommand = \"c\"\n", "[[cron]] x needs a schedule"},
             Bad{"name = \"x\"\nschedule = \"* * * * *\"\n", "[[cron]] x needs a command"},
             Bad{"name = \"x\"\nschedule = \"* * * * *\"\ncommand = \" \"\n",
                 "deploy.toml:5:11: cron.command must not be empty"},
             Bad{"name = \"x\"\nschedule = \"* * * * *\"\ncommand = \"c\"\ntimeout = \"0s\"\n",
                 "deploy.toml:6:11: cron.timeout must be longer than 0s"},
             Bad{"name = \"x\"\nschedule = \"* * * * *\"\ncommand = \"c\"\ntimezone = \"Mars\"\n",
                 "deploy.toml:6:12: cron.timezone: unknown timezone \"Mars\""},
             Bad{"name = \"x\"\nschedule = \"* * * * *\"\ncommand = \"c\"\nshedule = \"x\"\n",
                 "shedule"},
             Bad{"name = \"x\"\nschedule = \"* * * * *\"\ncommand = \"c\"\n[[cron]]\nname = "
                 "\"x\"\nschedule = \"* * * * *\"\ncommand = \"c\"\n",
                 "deploy.toml:7:8: cron.name \"x\" is used by two [[cron]] jobs"},
         }) {
        CAPTURE(bad.body);
        auto config =
            common::parse_config(std::string("app = \"a1\"\n[[cron]]\n") + bad.body, "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().kind == common::ErrorKind::config);
        CHECK_MESSAGE(config.error().message.find(bad.message) != std::string::npos,
                      config.error().message);
    }
    SUBCASE("cron as a plain table is refused") {
        auto config = common::parse_config("app = \"a1\"\n[cron]\nname = \"x\"\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.find("write each job as [[cron]]") != std::string::npos);
    }
}
