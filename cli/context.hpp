#pragma once
// What every command gets: the global options, the printer, and how to reach an agent.

#include <cli/hosts.hpp>
#include <cli/output/printer.hpp>
#include <cli/transport/client.hpp>
#include <cli/transport/http_client.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cli {

struct GlobalOptions {
    std::string target;             // -t NAME
    std::vector<std::string> hosts; // --host URL, repeatable
    std::string app;                // -a NAME, overrides deploy.toml
    bool json = false;
    bool quiet = false;
    bool no_color = false;
    bool accept_new_host_key = false; // record an ssh:// server's first-seen host key
    std::string ssh_config;           // -F FILE: the ssh config for ssh:// hosts ("none": none)
    std::string ca_file;              // --ca-file: https:// hosts, replaces deploy.toml's
    std::string fingerprint;          // --fingerprint (as typed), likewise
};

// Opens a client for one agent; ssh:// connects and logs in here (errors exit 3).
// `tls` applies to https:// hosts.
using Connect = std::function<common::Result<std::unique_ptr<transport::Client>>(
    const HostUrl& url, const SshSettings& ssh, const transport::TlsOptions& tls)>;

struct Context {
    GlobalOptions global;
    output::Printer* out = nullptr;
    Connect connect;             // the HTTP client by default; fakes in tests
    bool error_reported = false; // set when per-host errors were already printed
    // Set by a command whose success still ends with another code: `deployctl run` exits
    // with the status of the command it ran.
    std::optional<int> exit_code;
    // The standard streams a command reads and writes itself (`deployctl run`); tests give
    // pipes.
    struct Fds {
        int in = 0, out = 1, err = 2;
    } fds;
    // The handler of the command the parse chose: its CLI11 callback sets it
    // (cli/commands/commands.hpp), cli::run runs it.
    std::function<common::Status()> command;
};

} // namespace cli
