#pragma once
// Names of the environment variables `deployctl env set` stores on an agent.

#include <common/result.hpp>

#include <string_view>

namespace common {

// A POSIX name ([A-Za-z_][A-Za-z0-9_]*, at most 255 bytes) that the agent does
// not set itself (PORT, PATH, HOME, LANG); ErrorKind::usage says why not.
Status check_env_name(std::string_view name);

} // namespace common
