#pragma once
// The two programs of `git push` to the agent (docs/git.md), both clients of the agent's
// unix socket:
//
// `deploy-agent git-receive [--key NAME] [--app APP]...`: the forced command of an SSH
//   key (deploy-agent keys add writes it). sshd names what the pusher's git asked for in
//   SSH_ORIGINAL_COMMAND ("git-receive-pack '/APP'"); this checks the key's apps, then
//   relays stdin, stdout and stderr to a git receive-pack the agent runs in the app's
//   repository (POST /v1/apps/APP/git/receive, frames of common/run_frames.hpp).
// `deploy-agent git-hook pre-receive`: the hook that git receive-pack runs before it moves
//   a branch: it asks the agent to deploy the pushed commit and prints the deploy's events
//   (the pusher sees them as "remote:" lines); its exit status accepts or rejects the push.

#include <filesystem>
#include <string>
#include <vector>

namespace agent::git {

struct ReceiveOptions {
    std::filesystem::path socket;
    std::string key;               // the key's name, for the audit log and messages
    std::vector<std::string> apps; // the apps the key may push to; empty = every app
};

// The process's exit status.
int git_receive(const ReceiveOptions& options);
int git_hook_pre_receive();

// The app a `git push` names in SSH_ORIGINAL_COMMAND, or an error message (what to tell
// the pusher) in `error`.
std::string pushed_app(const std::string& original_command, std::string& error);

} // namespace agent::git
