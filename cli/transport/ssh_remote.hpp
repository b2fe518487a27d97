#pragma once
// Commands run on a server over one SSH session (deployctl agent install | upgrade): each
// in its own exec channel, its stdin given, its stdout, stderr and exit status collected.
// libssh2 stays in the .cpp.

#include <cli/transport/ssh_client.hpp>
#include <common/result.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace cli::transport {

struct RemoteResult {
    int status = 0; // the command's exit status (-1: killed by a signal)
    std::string out;
    std::string err; // with a pty: empty, everything is in `out`
};

class RemoteShell {
  public:
    // Connects and logs in as make_ssh_client does (ssh config, jumps, host key checks).
    static common::Result<std::unique_ptr<RemoteShell>> open(SshOptions options);
    virtual ~RemoteShell() = default;

    // Runs `command` (a shell command line) with `input` on its stdin, then end of file.
    // With `pty`, on a terminal (for a sudo that insists on one). Errors: the connection
    // (exit 3); a command that fails is a result with its status, not an error.
    virtual common::Result<RemoteResult> run(const std::string& command,
                                             std::string_view input = {}, bool pty = false) = 0;
    // "deploy@web1:22", for messages.
    virtual const std::string& where() const = 0;
};

} // namespace cli::transport
