#pragma once
// A webhook's deploy (docs/git.md): the pushed branch fetched with libgit2 from the app's
// repository URL ([git] url) into its bare repository on the agent, so that the pushed
// commit can be packaged as a push's is (repository.hpp).

#include <common/result.hpp>

#include <filesystem>
#include <string>

namespace agent::git {

// Fetches refs/heads/BRANCH of `url` into refs/heads/BRANCH of `repository` (forced: the
// provider's branch is the truth), creating the repository if needed. Errors are
// ErrorKind::connection (cannot reach or read the remote) with libgit2's reason.
// `token`: sent as the password (user x-access-token) when the remote asks for one; "" =
// none (a remote that asks is then an error saying so).
common::Status fetch_branch(const std::filesystem::path& repository, const std::string& url,
                            const std::string& branch, const std::string& token = "");

// Whether `commit` (hex) is in the repository.
bool has_commit(const std::filesystem::path& repository, const std::string& commit);

} // namespace agent::git
