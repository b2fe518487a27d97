#pragma once
// The Client over SSH: libssh2 logs in to the server and, for each HTTP
// connection, opens a direct-streamlocal channel to the agent's unix socket
// (what `ssh -L` does; no process is started on the server) or, when the
// server refuses those, runs the agent command (`deploy-agent dial-stdio`) in
// an exec channel; the HTTP client (libcurl) talks to a private unix socket
// that a tunnel thread relays to those channels. libssh2 stays in the .cpp files.

#include <cli/transport/client.hpp>
#include <cli/transport/http_client.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cli::transport {

struct SshOptions {
    std::string user; // empty: the local user's name
    std::string host; // the address connected to (an ssh config HostName replaces the alias)
    int port = 22;
    std::vector<std::string> agent_command; // empty: deploy-agent dial-stdio
    // The agent's socket on the server, reached by a direct-streamlocal channel (no command
    // run) before agent_command is tried; nullopt: k_default_agent_socket when agent_command
    // is the default, none when it is not; "": none.
    std::optional<std::string> agent_socket;
    std::string identity_file; // deploy.toml's: the only key tried
    bool accept_new_host_key = false;
    // Asked about an unknown host key when accept_new_host_key is off ("[web1]:2222",
    // "ssh-ed25519", "SHA256:..."): true records it (deployctl agent install asks the user).
    std::function<bool(const std::string& name, const std::string& type,
                       const std::string& fingerprint)>
        confirm_new_host_key;
    std::filesystem::path home; // empty: $HOME

    // From the ssh config (cli/transport/ssh_config.hpp); the defaults are deployctl's own.
    std::string alias;                       // the name in the URL, when HostName replaced it
    std::vector<std::string> identity_files; // IdentityFile: instead of ~/.ssh/id_*
    bool identities_only = false;            // IdentitiesOnly: ssh-agent keys of those files only
    std::vector<std::filesystem::path>
        known_hosts;               // UserKnownHostsFile: empty = ~/.ssh/known_hosts
    int connect_timeout_s = 10;    // ConnectTimeout: TCP connect and SSH handshake
    int keepalive_s = 15;          // ServerAliveInterval: 0 = none
    std::vector<SshOptions> jumps; // ProxyJump: the hops, first to last
};

// The agent command when a target sets none, and the socket it reaches.
std::vector<std::string> default_agent_command();
inline constexpr const char* k_default_agent_socket = "/run/deploy-agent/agent.sock";

// The socket a direct-streamlocal channel is opened to ("": none), as `options` say.
std::string agent_socket_of(const SshOptions& options);

// Connects, checks the host key and logs in before returning, so that an
// unreachable server, an unknown or changed host key and a refused login are
// reported here (exit 3). `display_url` names the agent in messages.
common::Result<std::unique_ptr<Client>> make_ssh_client(SshOptions options, std::string display_url,
                                                        HttpOptions http = {});

} // namespace cli::transport
