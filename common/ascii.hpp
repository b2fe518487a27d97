#pragma once
// ASCII case folding, for what is case-insensitive only in ASCII: HTTP header
// names, host names, hex digits, keywords and units. Unlike std::tolower it
// never depends on the C locale, and it leaves every other byte (UTF-8
// included) as it is.

#include <string>
#include <string_view>

namespace common {

constexpr char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string ascii_lower(std::string_view text) {
    std::string out(text);
    for (auto& c : out)
        c = ascii_lower(c);
    return out;
}

// Whether `a` and `b` are equal but for ASCII case.
constexpr bool ascii_iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

} // namespace common
