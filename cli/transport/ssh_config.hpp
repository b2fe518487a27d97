#pragma once
// The OpenSSH client configuration (ssh_config(5)) for ssh:// hosts: which address, user,
// port, keys, known_hosts files and bastions (ProxyJump) reach a host named in a URL.
// What is honoured and what is not: docs/ssh.md, "~/.ssh/config". Pure: reads files, no
// network.

#include <cli/transport/ssh_client.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli::transport {

// Where the configuration comes from: `file` when -F or DEPLOYCTL_SSH_CONFIG names one
// ("none": no configuration at all), else ~/.ssh/config then /etc/ssh/ssh_config.
struct SshConfigSource {
    std::optional<std::filesystem::path> file;
    std::filesystem::path system_file = "/etc/ssh/ssh_config";
};

// -F FILE, else $DEPLOYCTL_SSH_CONFIG, else the defaults.
SshConfigSource ssh_config_source(const std::string& flag);

// The values one host gets from the configuration, first value wins (IdentityFile and
// UserKnownHostsFile gather), as ssh(1) reads them. Tokens (%h %p %r %u %d %n %%) and ~
// are left for apply_ssh_config.
struct SshHostConfig {
    std::optional<std::string> host_name;
    std::optional<std::string> user;
    std::optional<int> port;
    std::vector<std::string> identity_files;
    std::optional<bool> identities_only;
    std::vector<std::string> known_hosts_files;
    std::optional<std::string> strict_host_key_checking; // as written: yes, accept-new, no, ...
    std::optional<std::string> proxy_jump;               // as written: "a,b" or "none"
    std::optional<std::string> proxy_command;
    std::optional<int> connect_timeout_s;
    std::optional<int> server_alive_interval_s;
    // "~/.ssh/config:12": where StrictHostKeyChecking's value, and ProxyJump's or
    // ProxyCommand's, came from, for messages.
    std::string strict_origin;
    std::string proxy_origin;
};

// The configuration for `host` (the name in the URL) logging in as `user` (empty: not
// given) from the files of `source`. Errors (config): a malformed number, an Include loop.
common::Result<SshHostConfig> read_ssh_config(const SshConfigSource& source,
                                              const std::string& host, const std::string& user,
                                              const std::filesystem::path& home);

// One ProxyJump hop: "[user@]host[:port]" or "ssh://[user@]host[:port]".
struct JumpSpec {
    std::string user;
    std::string host;
    int port = 0; // 0: not given
};
common::Result<std::vector<JumpSpec>> parse_proxy_jump(std::string_view value);

// Fills `options` (its user, host and port as the URL gave them: port 0 when the URL had
// none) from the configuration: HostName, User, Port, IdentityFile, IdentitiesOnly,
// UserKnownHostsFile, StrictHostKeyChecking, ProxyJump (each hop configured the same way),
// ConnectTimeout, ServerAliveInterval. Refused (config): StrictHostKeyChecking no,
// ProxyCommand, a ProxyJump loop.
common::Status apply_ssh_config(SshOptions& options, const SshConfigSource& source);

} // namespace cli::transport
