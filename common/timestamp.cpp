#include <common/duration.hpp>
#include <common/timestamp.hpp>

#include <fmt/format.h>

#include <cctype>

namespace common {

namespace {

// Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view text, std::size_t at, std::size_t count, int& out) {
    if (at + count > text.size())
        return false;
    out = 0;
    for (std::size_t i = at; i < at + count; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(text[i])))
            return false;
        out = out * 10 + (text[i] - '0');
    }
    return true;
}

} // namespace

Micros now_micros() {
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_micros(Micros at) {
    constexpr Micros k_day = 86400LL * 1000000;
    Micros days = at / k_day;
    Micros rest = at % k_day;
    if (rest < 0) {
        rest += k_day;
        --days;
    }
    // civil_from_days (H. Hinnant).
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
    const Micros seconds = rest / 1000000;
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", y, m, d, seconds / 3600,
                       seconds / 60 % 60, seconds % 60, rest % 1000000);
}

std::optional<Micros> parse_rfc3339(std::string_view text) {
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!digits(text, 0, 4, year) || text.size() < 20 || text[4] != '-' ||
        !digits(text, 5, 2, month) || text[7] != '-' || !digits(text, 8, 2, day) ||
        (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || !digits(text, 11, 2, hour) ||
        text[13] != ':' || !digits(text, 14, 2, minute) || text[16] != ':' ||
        !digits(text, 17, 2, second))
        return std::nullopt;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return std::nullopt;
    std::size_t at = 19;
    Micros fraction = 0;
    if (at < text.size() && text[at] == '.') {
        ++at;
        int count = 0;
        while (at < text.size() && std::isdigit(static_cast<unsigned char>(text[at]))) {
            if (count < 6)
                fraction = fraction * 10 + (text[at] - '0');
            ++count;
            ++at;
        }
        if (count == 0)
            return std::nullopt;
        for (; count < 6; ++count)
            fraction *= 10;
    }
    Micros offset = 0; // of local time from UTC, in seconds
    if (at < text.size() && (text[at] == 'Z' || text[at] == 'z')) {
        ++at;
    } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
        int oh = 0, om = 0;
        if (!digits(text, at + 1, 2, oh) || at + 3 >= text.size() || text[at + 3] != ':' ||
            !digits(text, at + 4, 2, om) || oh > 23 || om > 59)
            return std::nullopt;
        offset = (text[at] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
        at += 6;
    } else {
        return std::nullopt;
    }
    if (at != text.size())
        return std::nullopt;
    const Micros seconds =
        days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
        hour * 3600 + minute * 60 + second - offset;
    return seconds * 1000000 + fraction;
}

Result<Micros> parse_time_bound(std::string_view text, Micros now) {
    if (auto at = parse_rfc3339(text))
        return *at;
    // A date, or a date and time without a zone: UTC.
    if (text.size() == 10)
        if (auto at = parse_rfc3339(std::string(text) + "T00:00:00Z"))
            return *at;
    if (text.size() == 16 || text.size() == 19)
        if (auto at = parse_rfc3339(std::string(text) + (text.size() == 16 ? ":00Z" : "Z")))
            return *at;
    if (auto ago = parse_duration(text);
        ago && !text.empty() && std::isdigit(static_cast<unsigned char>(text[0])))
        return now - std::chrono::duration_cast<std::chrono::microseconds>(*ago).count();
    return make_error(ErrorKind::usage,
                      fmt::format("'{}' is neither a time (2026-12-04T10:00:00Z, 2026-12-04 10:00, "
                                  "2026-12-04) nor a duration before now (30m, 1h, 2d)",
                                  text.substr(0, 80)));
}

} // namespace common
