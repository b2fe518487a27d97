#pragma once
// A webhook's deploy (docs/git.md): the pushed branch fetched with libgit2 from the app's
// repository URL ([git] url) into its bare repository on the agent, so that the pushed
// commit can be packaged as a push's is (repository.hpp).

#include <common/result.hpp>

#include <chrono>
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

// Fetches `source` of `url` (refs/pull/7/head) into `destination` of `repository`, forced.
common::Status fetch_ref(const std::filesystem::path& repository, const std::string& url,
                         const std::string& source, const std::string& destination,
                         const std::string& token = "");

// fetch_ref on a thread of its own, waited for at most `timeout` (ErrorKind::timeout past
// it; the fetch runs on, and until it ends another fetch of `app` is ErrorKind::refused).
common::Status fetch_within(const std::string& app, const std::filesystem::path& repository,
                            const std::string& url, const std::string& source,
                            const std::string& destination, const std::string& token,
                            std::chrono::milliseconds timeout);

// Removes `ref` (refs/previews/7) from `repository`; a ref or repository that is not there
// is no error.
common::Status remove_ref(const std::filesystem::path& repository, const std::string& ref);

// Whether `commit` (hex) is in the repository.
bool has_commit(const std::filesystem::path& repository, const std::string& commit);

} // namespace agent::git
