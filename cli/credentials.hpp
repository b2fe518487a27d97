#pragma once
// Which bearer token deployctl sends to an agent (docs/security.md): the line
// for the agent's URL in the credentials file ($XDG_CONFIG_HOME/deployctl/
// credentials, default ~/.config/...), else $DEPLOYCTL_TOKEN, the default for
// agents without a line. The file must not be readable by group or others (as
// ssh insists for private keys).

#include <common/result.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace cli {

// The credentials file's path.
std::filesystem::path credentials_path();

// Where a token came from, so that an error can say what to change.
enum class TokenSource { none, file, environment, given };

struct AgentToken {
    std::string value; // "" when there is none
    TokenSource source = TokenSource::none;
};

// The token for the agent at `base_url`: the file's line for it, else the
// environment's, else none. ErrorKind::auth when the file is group or world
// readable, or unreadable; ErrorKind::config for a malformed line.
common::Result<AgentToken> token_for(const std::string& base_url);

// Reads the token for `base_url` from `path` ("" when missing).
common::Result<std::string> read_credentials(const std::filesystem::path& path,
                                             const std::string& base_url);

// Adds the line "BASE_URL TOKEN" to `path`, or replaces the line for
// `base_url`, keeping the other lines; atomic, mode 0600, its folder created
// 0700 when missing. Returns whether a line was replaced. The same checks as
// read_credentials first: a file others may read is refused.
common::Result<bool> store_credentials(const std::filesystem::path& path,
                                       const std::string& base_url, const std::string& token);

// What went wrong and what to do after a 401 or 403 (`status`, the agent's
// `message`) from the agent at `base_url`, given where the token came from.
std::string auth_error_message(long status, std::string_view message, std::string_view base_url,
                               TokenSource source);

} // namespace cli
