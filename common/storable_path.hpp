#pragma once
// Whether the agent's store can keep a path faithfully: valid UTF-8 with no control
// character (U+0000–U+001F, U+007F, U+0080–U+009F). A newline or an escape sequence in a
// file name would end up in logs, file listings and terminals. The CLI checks it when it
// packages a tree, the agent in validate_manifest(): one rule on both sides.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace common {

// The first thing in a path that the store refuses.
struct PathFlaw {
    std::size_t offset = 0; // byte offset in the path
    std::string what;       // "a newline (U+000A)", "bytes that are not valid UTF-8"
};

// What an error about such a path tells the user (after "contains X at byte N: ").
inline constexpr std::string_view k_storable_path_rule =
    "paths must be valid UTF-8 without control characters (U+0000-U+001F, U+007F-U+009F): "
    "rename the file";

// The first flaw of `path`, or nothing when the store can keep it.
std::optional<PathFlaw> find_path_flaw(std::string_view path);
inline bool is_storable_path(std::string_view path) {
    return !find_path_flaw(path);
}

// The byte offset of the first sequence in `text` that is not valid UTF-8 (RFC 3629:
// overlong forms, surrogates, lone continuation bytes...), or nothing when all of it is.
std::optional<std::size_t> invalid_utf8_offset(std::string_view text);

// `path` safe to print on one line: \n, \t, \r, \" and \\ escaped as in C, other control
// characters as \xHH (C0, DEL) or \uHHHH (C1), bytes that are not UTF-8 as \xHH.
// Valid UTF-8 text (é, 日本) stays as it is.
std::string escape_path(std::string_view path);

} // namespace common
