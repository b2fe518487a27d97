#pragma once
// `deploy-agent keys add|ls|rm` (docs/git.md): the SSH keys that may `git push` to the
// agent, as lines of the push user's authorized_keys, each with a forced command:
//
//   restrict,command="/usr/bin/deploy-agent git-receive --key NAME --app APP" ssh-ed25519 AAAA…
//   NAME
//
// sshd then runs nothing but git-receive for that key, whatever the client asks, and
// git-receive lets it push only to its apps. Lines the agent did not write are kept as
// they are.

#include <common/result.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace agent::git {

struct KeysCommand {
    std::string user = "deploy"; // whose ~/.ssh/authorized_keys
    std::string file;            // or this file
    std::string name;
    std::vector<std::string> apps;
    bool all_apps = false;
    std::string key_file; // add: the public key ("-" or empty: stdin)
    std::string socket;   // add: the agent's socket, when not the default
    bool json = false;
};

// One push key as its authorized_keys line says it.
struct PushKey {
    std::string name;
    std::vector<std::string> apps; // empty: every app
    std::string type;
    std::string fingerprint; // SHA256:...
    std::string socket;      // --socket of its command, "" for the default
};

// The push keys of an authorized_keys file's text (other lines are not listed).
std::vector<PushKey> read_push_keys(const std::string& text);
// The line `keys add` writes.
std::string push_key_line(const std::filesystem::path& program, const PushKey& key,
                          const std::string& base64);

// Each prints what it did and returns the process exit code.
int keys_add(const KeysCommand& command);
int keys_list(const KeysCommand& command);
int keys_remove(const KeysCommand& command);

} // namespace agent::git
