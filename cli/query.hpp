#pragma once
// Building the query strings of the agent's API (docs/api.md).

#include <string>

namespace cli {

// `text` as a query value: letters, digits and -._~ as they are, every other
// byte as %XX.
std::string percent_encode(const std::string& text);

} // namespace cli
