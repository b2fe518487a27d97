#pragma once
// A webhook's deploy (docs/git.md): the pushed branch fetched with libgit2 from the app's
// repository URL ([git] url) into its bare repository on the agent, so that the pushed
// commit can be packaged as a push's is (repository.hpp).

#include <common/result.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

namespace agent::git {

// What a fetch authenticates with: a token (https: the password of user x-access-token),
// or over ssh the app's deploy key, written for the fetch's time to a 0600 file in
// `key_dir` (libssh2 reads keys from files), and the check of the server's host key
// ("ssh-ed25519 AAAA...", for "HOST" or "HOST:PORT"), which refuses it with an error.
struct FetchAuth {
    std::string token;
    std::string ssh_key_pem;
    std::filesystem::path key_dir;
    std::function<common::Status(const std::string& host, const std::string& key)> check_host;
};

// Fetches `source` of `url` (refs/pull/7/head) into `destination` of `repository`, forced.
common::Status fetch_ref(const std::filesystem::path& repository, const std::string& url,
                         const std::string& source, const std::string& destination,
                         const FetchAuth& auth = {});

// The host a host key is checked for: "HOST" (port 22) or "HOST:PORT" of an ssh:// URL,
// "HOST" of USER@HOST:PATH.
std::string ssh_host_of(const std::string& url);

// fetch_ref on a thread of its own, waited for at most `timeout` (ErrorKind::timeout past
// it; the fetch runs on, and until it ends another fetch of `app` is ErrorKind::refused).
common::Status fetch_within(const std::string& app, const std::filesystem::path& repository,
                            const std::string& url, const std::string& source,
                            const std::string& destination, const FetchAuth& auth,
                            std::chrono::milliseconds timeout);

// Removes `ref` (refs/previews/7) from `repository`; a ref or repository that is not there
// is no error.
common::Status remove_ref(const std::filesystem::path& repository, const std::string& ref);

// Whether `commit` (hex) is in the repository.
bool has_commit(const std::filesystem::path& repository, const std::string& commit);

} // namespace agent::git
