#include <common/storable_path.hpp>

#include <fmt/format.h>

#include <cstdint>

namespace common {

namespace {

// The length of the UTF-8 sequence starting at `text[i]` and its code point, or 0 when
// the bytes there are not valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF, no lone or missing continuation bytes).
std::size_t utf8_sequence(std::string_view text, std::size_t i, char32_t& code_point) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    if (lead < 0x80) {
        code_point = lead;
        return 1;
    }
    std::size_t length = 0;
    unsigned char low = 0x80, high = 0xBF; // the range of the second byte
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
        code_point = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        code_point = lead & 0x0F;
        if (lead == 0xE0)
            low = 0xA0; // overlong below U+0800
        if (lead == 0xED)
            high = 0x9F; // surrogates U+D800..U+DFFF
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        code_point = lead & 0x07;
        if (lead == 0xF0)
            low = 0x90; // overlong below U+10000
        if (lead == 0xF4)
            high = 0x8F; // above U+10FFFF
    } else {
        return 0; // a continuation byte, C0/C1 (overlong ASCII), F5..FF
    }
    if (i + length > text.size())
        return 0;
    for (std::size_t k = 1; k < length; ++k) {
        const unsigned char next = byte(i + k);
        if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xBF))
            return 0;
        code_point = (code_point << 6) | (next & 0x3F);
    }
    return length;
}

bool is_control(char32_t c) {
    return c < 0x20 || (c >= 0x7F && c <= 0x9F);
}

std::string describe_control(char32_t c) {
    const auto code = fmt::format("U+{:04X}", static_cast<std::uint32_t>(c));
    switch (c) {
    case U'\0':
        return "a NUL byte (" + code + ")";
    case U'\n':
        return "a newline (" + code + ")";
    case U'\r':
        return "a carriage return (" + code + ")";
    case U'\t':
        return "a tab (" + code + ")";
    case 0x1B:
        return "an escape character (" + code + ")";
    case 0x7F:
        return "a delete character (" + code + ")";
    default:
        return "a control character (" + code + ")";
    }
}

} // namespace

std::optional<PathFlaw> find_path_flaw(std::string_view path) {
    for (std::size_t i = 0; i < path.size();) {
        char32_t c = 0;
        const auto length = utf8_sequence(path, i, c);
        if (length == 0)
            return PathFlaw{i, "bytes that are not valid UTF-8"};
        if (is_control(c))
            return PathFlaw{i, describe_control(c)};
        i += length;
    }
    return std::nullopt;
}

std::optional<std::size_t> invalid_utf8_offset(std::string_view text) {
    for (std::size_t i = 0; i < text.size();) {
        char32_t c = 0;
        const auto length = utf8_sequence(text, i, c);
        if (length == 0)
            return i;
        i += length;
    }
    return std::nullopt;
}

std::string escape_path(std::string_view path) {
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size();) {
        char32_t c = 0;
        const auto length = utf8_sequence(path, i, c);
        if (length == 0) {
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(path[i]));
            ++i;
            continue;
        }
        switch (c) {
        case U'\n':
            out += "\\n";
            break;
        case U'\r':
            out += "\\r";
            break;
        case U'\t':
            out += "\\t";
            break;
        case U'"':
            out += "\\\"";
            break;
        case U'\\':
            out += "\\\\";
            break;
        default:
            if (c < 0x20 || c == 0x7F)
                out += fmt::format("\\x{:02x}", static_cast<std::uint32_t>(c));
            else if (is_control(c))
                out += fmt::format("\\u{:04x}", static_cast<std::uint32_t>(c));
            else
                out.append(path.substr(i, length));
        }
        i += length;
    }
    return out;
}

} // namespace common
