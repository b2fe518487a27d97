#pragma once
// The agent's side of `git push` (docs/git.md): a bare repository per app
// (DataDir::git_repo), the pre-receive hook git receive-pack runs there, the pushes in
// progress, and a pushed commit packaged into a manifest exactly as `deployctl deploy`
// packages a committed tree (common/git/walk.hpp). libgit2 stays in the .cpp file.

#include <agent/paths.hpp>
#include <common/manifest.hpp>
#include <common/result.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace agent::git {

// The Upgrade protocol of POST /v1/apps/{app}/git/receive: the frames of
// common/run_frames.hpp, git receive-pack's input and output.
inline constexpr std::string_view k_receive_upgrade = "deploy-agent-git/1";
// The environment git receive-pack and its hook get from the agent.
inline constexpr const char* k_push_env = "DEPLOY_AGENT_PUSH";     // the push's id
inline constexpr const char* k_socket_env = "DEPLOY_AGENT_SOCKET"; // the agent's socket
inline constexpr const char* k_app_env = "DEPLOY_AGENT_APP";       // the app pushed to

// The object id git names "no commit" with (a branch created or deleted).
inline constexpr std::string_view k_zero_oid = "0000000000000000000000000000000000000000";

// Creates the app's bare repository when it does not exist yet.
common::Status ensure_repository(const std::filesystem::path& path);

// Writes DATA/git/hooks/pre-receive (atomically, 0700): it runs `AGENT git-hook
// pre-receive`, the program that asks the agent to deploy (agent/git/push_client.hpp).
common::Status write_hooks(const DataDir& data, const std::filesystem::path& agent_program);

// The pushes in progress, by an id only their git receive-pack (and so their hook)
// knows: the hook's request names it, and the agent knows which app and which key.
struct Push {
    std::string app;
    std::string key;  // the SSH key's name (deploy-agent keys), "" when none was named
    std::string user; // who connected to the socket (the SSH login)
};
class Pushes {
  public:
    common::Result<std::string> begin(Push push); // its id
    std::optional<Push> find(const std::string& id) const;
    void end(const std::string& id);

  private:
    mutable std::mutex m_mutex;
    std::map<std::string, Push> m_pushes;
};

// A commit of the app's repository (with `quarantine`: the objects of a push not yet
// accepted, which git keeps apart until pre-receive says yes), as deployctl deploy sends
// a committed tree: the manifest, deploy.toml's text, the commit's id and first line.
struct PackagedCommit {
    common::Manifest manifest;
    std::string config_text; // "" when the commit has no deploy.toml at its root
    std::string commit;
    std::string message;
    std::vector<std::string> warnings; // submodules skipped, ...
    // The bytes of a file of the manifest, by digest.
    std::function<common::Result<std::string>(const std::string& digest)> read;
};
common::Result<std::shared_ptr<PackagedCommit>>
package_commit(const std::filesystem::path& repository, const std::filesystem::path& quarantine,
               const std::string& commit);

} // namespace agent::git
