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
    std::string fingerprint; // the file's pin for an https:// agent (canonical), "" for none
};

// One line of the file: "URL TOKEN [FINGERPRINT]"; the fingerprint (written by deployctl
// agent install --https) pins an https:// agent's certificate when neither --ca-file,
// --fingerprint nor deploy.toml says how to check it.
struct Credential {
    std::string token;       // "" when the file has no line for the agent
    std::string fingerprint; // canonical "sha256:AB:...", "" for none
};

// The token for the agent at `base_url`: the file's line for it, else the
// environment's, else none. ErrorKind::auth when the file is group or world
// readable, or unreadable; ErrorKind::config for a malformed line.
common::Result<AgentToken> token_for(const std::string& base_url);

// Reads the token for `base_url` from `path` ("" when missing).
common::Result<std::string> read_credentials(const std::filesystem::path& path,
                                             const std::string& base_url);
// The whole line for `base_url` (empty fields when there is none).
common::Result<Credential> read_credential(const std::filesystem::path& path,
                                           const std::string& base_url);

// Adds the line "BASE_URL TOKEN [FINGERPRINT]" to `path`, or replaces the line for
// `base_url`, keeping the other lines; atomic, mode 0600, its folder created
// 0700 when missing. Returns whether a line was replaced. The same checks as
// read_credentials first: a file others may read is refused.
common::Result<bool> store_credentials(const std::filesystem::path& path,
                                       const std::string& base_url, const std::string& token,
                                       const std::string& fingerprint = {});

// What went wrong and what to do after a 401 or 403 (`status`, the agent's
// `message`) from the agent at `base_url`, given where the token came from.
std::string auth_error_message(long status, std::string_view message, std::string_view base_url,
                               TokenSource source);

} // namespace cli
