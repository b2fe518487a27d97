#pragma once
// A whole decimal number read from text that is that number and nothing else: no
// spaces, no trailing characters, no sign for an unsigned type, within the type's range.

#include <charconv>
#include <optional>
#include <string_view>
#include <system_error>

namespace common {

template <class T> std::optional<T> parse_whole_number(std::string_view text) {
    T value{};
    const auto* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end)
        return std::nullopt;
    return value;
}

} // namespace common
