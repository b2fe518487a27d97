#pragma once
// Which bearer token deployctl sends to an agent (docs/security.md):
// $DEPLOYCTL_TOKEN, else the line for the agent's URL in the credentials file
// ($XDG_CONFIG_HOME/deployctl/credentials, default ~/.config/...), which must
// not be readable by group or others (as ssh insists for private keys).

#include <common/result.hpp>

#include <filesystem>
#include <string>

namespace cli {

// The credentials file's path.
std::filesystem::path credentials_path();

// The token for the agent at `base_url` ("" when there is none): the
// environment's, else the file's. ErrorKind::auth when the file is group or
// world readable, or unreadable; ErrorKind::config for a malformed line.
common::Result<std::string> token_for(const std::string& base_url);

// Reads the token for `base_url` from `path` ("" when missing).
common::Result<std::string> read_credentials(const std::filesystem::path& path,
                                             const std::string& base_url);

// What to do after a 401 or 403 from the agent at `base_url`.
std::string auth_advice(long status);

} // namespace cli
