#pragma once
// An app's deploy key (docs/git.md): the SSH key the agent fetches the app's repository
// with when [git] url is an ssh one. Made on the agent (its private half never leaves it,
// but sealed in state.db), its public half given to the provider as a read-only deploy key.

#include <common/result.hpp>

#include <string>

namespace agent::git {

struct DeployKey {
    std::string private_pem; // "-----BEGIN EC PRIVATE KEY-----": libssh2 reads it as is
    std::string public_line; // "ecdsa-sha2-nistp256 AAAA... deploy-agent@APP"
};

// A new ECDSA P-256 key (an algorithm GitHub, GitLab and Gitea take for deploy keys, and
// libssh2 reads from PEM). ErrorKind::internal if OpenSSL fails.
common::Result<DeployKey> make_deploy_key(const std::string& app);

} // namespace agent::git
