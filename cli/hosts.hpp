#pragma once
// Which agents to talk to: agent URLs and where they come from (pure functions).

#include <common/address.hpp>
#include <common/config.hpp>
#include <common/result.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

enum class Scheme { http, https, ssh };

struct HostUrl {
    Scheme scheme = Scheme::http;
    std::string user;     // ssh only
    std::string host;     // without brackets for IPv6
    int port = 0;         // 0 = the scheme's default
    std::string base_url; // "https://web2:7443", no trailing slash
};

// Parses "http://127.0.0.1:7070", "https://web2:7443", "ssh://deploy@web1:22".
// Errors are ErrorKind::usage and say what was expected.
common::Result<HostUrl> parse_host_url(std::string_view text);

// 127.0.0.0/8, ::1 and "localhost" (shared with the agent's listen check).
using common::is_loopback_host;

// Plain http:// is only allowed to loopback.
common::Status check_transport(const HostUrl& url);

// What a deploy.toml target says about reaching its ssh:// hosts.
struct SshSettings {
    std::vector<std::string> agent_command;  // empty: deploy-agent dial-stdio
    std::string identity_file;               // empty: ssh-agent, then ~/.ssh/id_*
    std::optional<std::string> agent_socket; // as TargetConfig::agent_socket
};

struct HostSources {
    std::vector<std::string> flags;            // --host, in order
    std::optional<std::string> env;            // DEPLOYCTL_HOST (comma-separated)
    const common::AppConfig* config = nullptr; // deploy.toml, when there is one
    std::string target;                        // -t NAME, empty when not given
};

// --host, else DEPLOYCTL_HOST, else the hosts of a target in deploy.toml: the one
// named by -t, the only one, or "production". The result is never empty.
common::Result<std::vector<std::string>> resolve_hosts(const HostSources& sources);

// The target whose settings apply (agent_command, identity_file), also when
// --host overrides its hosts: the one named by -t, the only one, or
// "production"; nullptr when there is none.
const common::TargetConfig* selected_target(const HostSources& sources);

} // namespace cli
