#pragma once
// Command lines written as one string (deploy.toml's agent_command) and sent as
// one string (an SSH exec request, which the remote user's shell runs).

#include <common/result.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace common {

// Splits "a 'b c' \"d e\"" into words as a POSIX shell would, without any
// expansion: whitespace separates words, single quotes keep everything
// literally, double quotes keep everything but \" and \\, and a backslash
// outside quotes keeps the next character. ErrorKind::config for an
// unterminated quote or a trailing backslash.
Result<std::vector<std::string>> split_words(std::string_view text);

// One word for a POSIX shell: as is when it holds only characters no shell
// treats specially, else in single quotes (a ' becomes '\'').
std::string shell_quote(std::string_view word);

// Each word quoted with shell_quote, joined by spaces.
std::string shell_join(const std::vector<std::string>& words);

} // namespace common
