#pragma once
// Reading a secret from stdin: typed without echo on a terminal (after
// `prompt` on stderr), else all of stdin with one trailing newline dropped.
// Used by `env set --secret` and `login`.

#include <common/result.hpp>

#include <string>
#include <string_view>

namespace cli {

// ErrorKind::usage "no WHAT was read from stdin" when it is empty.
common::Result<std::string> read_secret(std::string_view prompt, std::string_view what);

} // namespace cli
