#include <common/ascii.hpp>
#include <common/cron.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <date/date.h>
#include <date/tz.h>
#include <vector>

namespace common {

namespace {

struct Field {
    const char* name;
    int min;
    int max;
    const std::array<const char*, 12>* names; // names[i] is min + i
};

constexpr std::array<const char*, 12> k_months = {"jan", "feb", "mar", "apr", "may", "jun",
                                                  "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<const char*, 12> k_weekdays = {
    "sun", "mon", "tue", "wed", "thu", "fri", "sat", nullptr, nullptr, nullptr, nullptr, nullptr};

Error field_error(const Field& field, const std::string& message) {
    return make_error(ErrorKind::usage, fmt::format("schedule {} field: {}", field.name, message));
}

Result<int> read_value(const Field& field, std::string_view text) {
    if (text.empty())
        return field_error(field, "a value is missing");
    if (std::isdigit(static_cast<unsigned char>(text[0]))) {
        int value = 0;
        for (char c : text) {
            if (!std::isdigit(static_cast<unsigned char>(c)))
                return field_error(field, fmt::format("\"{}\" is not a number", text));
            value = value * 10 + (c - '0');
            if (value > 1000)
                break;
        }
        if (value < field.min || value > field.max)
            return field_error(field,
                               fmt::format("{} is out of range {}-{}", text, field.min, field.max));
        return value;
    }
    if (field.names) {
        const std::string lower = ascii_lower(text);
        for (std::size_t i = 0; i < field.names->size(); ++i)
            if ((*field.names)[i] && lower == (*field.names)[i])
                return field.min + static_cast<int>(i);
    }
    return field_error(field, fmt::format("\"{}\" is not a number{}", text,
                                          field.names ? " or a name (jan, mon...)" : ""));
}

// Sets the values of one field; `star`: it starts with '*'.
template <std::size_t N>
Status read_field(const Field& field, std::string_view text, std::bitset<N>& out, bool* star) {
    if (star)
        *star = !text.empty() && text.front() == '*';
    std::size_t start = 0;
    while (true) {
        const auto comma = text.find(',', start);
        std::string_view item =
            text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
        if (item.empty())
            return field_error(field, fmt::format("\"{}\" has an empty list item", text));
        int step = 1;
        if (const auto slash = item.find('/'); slash != std::string_view::npos) {
            const auto step_text = item.substr(slash + 1);
            item = item.substr(0, slash);
            if (step_text.empty() ||
                !std::all_of(step_text.begin(), step_text.end(),
                             [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
                step_text.size() > 3)
                return field_error(field, fmt::format("step \"{}\" is not a number", step_text));
            step = std::stoi(std::string(step_text));
            if (step < 1 || step > field.max - field.min + 1)
                return field_error(field, fmt::format("step {} is out of range 1-{}", step,
                                                      field.max - field.min + 1));
        }
        int low = field.min;
        int high = field.max;
        if (item == "*") {
        } else if (const auto dash = item.find('-'); dash != std::string_view::npos) {
            TRY_ASSIGN(low, read_value(field, item.substr(0, dash)));
            TRY_ASSIGN(high, read_value(field, item.substr(dash + 1)));
            if (high < low)
                return field_error(field, fmt::format("range {} goes backwards", item));
        } else {
            TRY_ASSIGN(low, read_value(field, item));
            if (step == 1)
                high = low; // "5/15" is 5-max/15, as cronie reads it
        }
        for (int v = low; v <= high; v += step)
            out.set(static_cast<std::size_t>(field.names == &k_weekdays ? v % 7 : v));
        if (comma == std::string_view::npos)
            break;
        start = comma + 1;
    }
    return {};
}

std::string_view expand_shortcut(std::string_view text) {
    if (text == "@hourly")
        return "0 * * * *";
    if (text == "@daily" || text == "@midnight")
        return "0 0 * * *";
    if (text == "@weekly")
        return "0 0 * * 0";
    if (text == "@monthly")
        return "0 0 1 * *";
    if (text == "@yearly" || text == "@annually")
        return "0 0 1 1 *";
    return {};
}

const date::time_zone* zone_of(std::string_view name) {
    try {
        return date::locate_zone(name);
    } catch (const std::exception&) {
        return nullptr;
    }
}

bool day_matches(const CronSchedule& s, const date::year_month_day& ymd) {
    if (!s.months[static_cast<unsigned>(ymd.month())])
        return false;
    const bool dom = s.days[static_cast<unsigned>(ymd.day())];
    const bool dow = s.weekdays[date::weekday(date::sys_days(ymd)).c_encoding()];
    if (s.days_star || s.weekdays_star)
        return dom && dow; // a '*' field matches every day: the other one decides
    return dom || dow;     // both restricted: either one (Vixie cron)
}

} // namespace

Result<CronSchedule> parse_cron_schedule(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
        text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
        text.remove_suffix(1);
    if (!text.empty() && text.front() == '@') {
        auto expanded = expand_shortcut(text);
        if (expanded.empty())
            return make_error(ErrorKind::usage,
                              fmt::format("schedule \"{}\" is not one of @hourly, @daily, "
                                          "@weekly, @monthly, @yearly",
                                          text));
        text = expanded;
    }
    std::vector<std::string_view> fields;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])))
            ++i;
        const auto begin = i;
        while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i])))
            ++i;
        if (i > begin)
            fields.push_back(text.substr(begin, i - begin));
    }
    if (fields.size() != 5)
        return make_error(ErrorKind::usage,
                          fmt::format("schedule \"{}\" has {} fields; it needs 5: minute hour "
                                      "day-of-month month day-of-week (\"*/5 * * * *\")",
                                      text, fields.size()));
    CronSchedule s;
    TRY(read_field(Field{"minute", 0, 59, nullptr}, fields[0], s.minutes, nullptr));
    TRY(read_field(Field{"hour", 0, 23, nullptr}, fields[1], s.hours, &s.hours_star));
    TRY(read_field(Field{"day-of-month", 1, 31, nullptr}, fields[2], s.days, &s.days_star));
    TRY(read_field(Field{"month", 1, 12, &k_months}, fields[3], s.months, nullptr));
    TRY(read_field(Field{"day-of-week", 0, 7, &k_weekdays}, fields[4], s.weekdays,
                   &s.weekdays_star));
    return s;
}

bool is_valid_timezone(std::string_view name) {
    return !name.empty() && zone_of(name);
}

std::optional<SysMinutes> next_cron_time(const CronSchedule& s, std::string_view timezone,
                                         SysMinutes after) {
    using namespace std::chrono;
    const date::time_zone* zone = zone_of(timezone.empty() ? "UTC" : timezone);
    if (!zone)
        zone = date::locate_zone("UTC");
    // Local minutes from the one after `after`'s local time; each match becomes
    // one or two instants (DST). The earliest instant after `after` wins, looked
    // for a few hours past the first one found (a fall-back's second hour).
    const auto start = date::floor<minutes>(zone->to_local(after)) - hours(3);
    std::optional<SysMinutes> best;
    date::local_time<minutes> best_local{};
    auto consider = [&](SysMinutes t, date::local_time<minutes> local) {
        if (t > after && (!best || t < *best)) {
            best = t;
            best_local = local;
        }
    };
    const auto first_day = date::floor<date::days>(start);
    for (int d = 0; d < 366 * 8 + 2; ++d) {
        const auto day = first_day + date::days(d);
        if (best && day > best_local + hours(3))
            break;
        const date::year_month_day ymd{date::sys_days(day.time_since_epoch())};
        if (!day_matches(s, ymd))
            continue;
        for (int h = 0; h < 24; ++h) {
            if (!s.hours[static_cast<std::size_t>(h)])
                continue;
            for (int m = 0; m < 60; ++m) {
                if (!s.minutes[static_cast<std::size_t>(m)])
                    continue;
                const auto local =
                    date::local_time<minutes>(day.time_since_epoch()) + hours(h) + minutes(m);
                if (local < start)
                    continue;
                if (best && local > best_local + hours(3))
                    return best;
                const auto info = zone->get_info(local);
                switch (info.result) {
                case date::local_info::unique:
                    consider(date::floor<minutes>(SysMinutes(local.time_since_epoch()) -
                                                  info.first.offset),
                             local);
                    break;
                case date::local_info::nonexistent:
                    consider(date::floor<minutes>(info.second.begin), local);
                    break;
                case date::local_info::ambiguous:
                    consider(date::floor<minutes>(SysMinutes(local.time_since_epoch()) -
                                                  info.first.offset),
                             local);
                    if (s.hours_star)
                        consider(date::floor<minutes>(SysMinutes(local.time_since_epoch()) -
                                                      info.second.offset),
                                 local);
                    break;
                }
            }
        }
    }
    return best;
}

} // namespace common
