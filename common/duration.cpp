#include <common/ascii.hpp>
#include <common/duration.hpp>

#include <fmt/format.h>

#include <cctype>
#include <charconv>

namespace common {

namespace {

// Reads digits (optionally with a fraction) from the front of `text`.
bool read_number(std::string_view& text, double& out) {
    std::size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
        ++i;
    if (i == 0)
        return false;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, out);
    if (ec != std::errc{} || ptr != text.data() + i)
        return false;
    text.remove_prefix(i);
    return true;
}

std::string_view read_unit(std::string_view& text) {
    std::size_t i = 0;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])))
        ++i;
    auto unit = text.substr(0, i);
    text.remove_prefix(i);
    return unit;
}

std::optional<double> duration_unit_ms(std::string_view unit) {
    if (unit == "ms")
        return 1.0;
    if (unit == "s")
        return 1000.0;
    if (unit == "m")
        return 60000.0;
    if (unit == "h")
        return 3600000.0;
    if (unit == "d")
        return 86400000.0;
    return std::nullopt;
}

std::optional<double> size_unit_bytes(std::string_view unit) {
    const std::string lower = ascii_lower(unit);
    if (lower.empty() || lower == "b")
        return 1.0;
    if (lower == "k" || lower == "kb" || lower == "kib")
        return 1024.0;
    if (lower == "m" || lower == "mb" || lower == "mib")
        return 1024.0 * 1024;
    if (lower == "g" || lower == "gb" || lower == "gib")
        return 1024.0 * 1024 * 1024;
    return std::nullopt;
}

} // namespace

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
    const std::string original(text);
    auto bad = [&] {
        return make_error(ErrorKind::config,
                          fmt::format("invalid duration \"{}\" (expected e.g. \"500ms\", \"10s\", "
                                      "\"5m\", \"1h30m\", \"30d\")",
                                      original));
    };
    if (text.empty())
        return bad();
    double total = 0;
    while (!text.empty()) {
        double value = 0;
        if (!read_number(text, value))
            return bad();
        auto factor = duration_unit_ms(read_unit(text));
        if (!factor)
            return bad();
        total += value * *factor;
    }
    if (total > 1e12)
        return bad();
    return std::chrono::milliseconds(static_cast<long long>(total + 0.5));
}

Result<std::uint64_t> parse_size(std::string_view text) {
    const std::string original(text);
    double value = 0;
    if (!read_number(text, value))
        return make_error(
            ErrorKind::config,
            fmt::format("invalid size \"{}\" (expected e.g. \"512m\", \"1g\")", original));
    auto factor = size_unit_bytes(read_unit(text));
    if (!factor || !text.empty() || value * *factor > 1e15)
        return make_error(
            ErrorKind::config,
            fmt::format("invalid size \"{}\" (expected e.g. \"512m\", \"1g\")", original));
    return static_cast<std::uint64_t>(value * *factor);
}

std::string format_duration(std::chrono::milliseconds d) {
    const long long ms = d.count();
    if (ms < 1000)
        return fmt::format("{}ms", ms);
    if (ms < 60000) {
        if (ms % 1000 == 0)
            return fmt::format("{}s", ms / 1000);
        return fmt::format("{:.1f}s", static_cast<double>(ms) / 1000.0);
    }
    const long long s = ms / 1000;
    if (s < 3600)
        return s % 60 ? fmt::format("{}m{:02}s", s / 60, s % 60) : fmt::format("{}m", s / 60);
    return s % 3600 ? fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60)
                    : fmt::format("{}h", s / 3600);
}

std::string format_size(std::uint64_t bytes) {
    constexpr std::uint64_t k = 1024, m = k * k, g = m * k;
    if (bytes && bytes % g == 0)
        return fmt::format("{}g", bytes / g);
    if (bytes && bytes % m == 0)
        return fmt::format("{}m", bytes / m);
    if (bytes && bytes % k == 0)
        return fmt::format("{}k", bytes / k);
    return fmt::format("{}", bytes);
}

std::string format_bytes(std::uint64_t bytes) {
    if (bytes < 1024)
        return fmt::format("{} B", bytes);
    const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
    double value = static_cast<double>(bytes) / 1024.0;
    int unit = 0;
    while (value >= 1024.0 && unit < 3) {
        value /= 1024.0;
        ++unit;
    }
    return fmt::format("{:.1f} {}", value, units[unit]);
}

} // namespace common
