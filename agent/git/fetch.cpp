#include <agent/git/fetch.hpp>
#include <agent/git/repository.hpp>
#include <common/config.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/git/walk.hpp>
#include <common/hash.hpp>
#include <common/ssh_key.hpp>

#include <fmt/format.h>
#include <git2.h>

#include <cerrno>
#include <fcntl.h>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace agent::git {

namespace {

using common::ErrorKind;
using common::make_error;

// What the callbacks of one fetch share. libgit2 asks again after refused credentials: each
// is given once.
struct Credentials {
    const FetchAuth* auth = nullptr;
    std::string key_file; // the deploy key, written for the fetch (ssh)
    std::string host;     // what the host key is checked for (ssh)
    int asked = 0;
    std::string host_error; // why the host key was refused
};

int credentials(git_credential** out, const char* /*url*/, const char* username,
                unsigned int allowed, void* payload) {
    auto& given = *static_cast<Credentials*>(payload);
    const char* user = username && *username ? username : "git";
    if (allowed & GIT_CREDENTIAL_USERNAME)
        return git_credential_username_new(out, user);
    if (given.asked++ > 0)
        return GIT_EAUTH;
    if ((allowed & GIT_CREDENTIAL_SSH_KEY) && !given.key_file.empty())
        return git_credential_ssh_key_new(out, user, nullptr, given.key_file.c_str(), "");
    if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && !given.auth->token.empty())
        return git_credential_userpass_plaintext_new(out, "x-access-token",
                                                     given.auth->token.c_str());
    return GIT_EAUTH;
}

// An ssh server's host key: trusted as FetchAuth::check_host says (https certificates are
// libgit2's to check).
int check_certificate(git_cert* cert, int /*valid*/, const char* /*host*/, void* payload) {
    if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2)
        return GIT_PASSTHROUGH;
    auto& given = *static_cast<Credentials*>(payload);
    const auto* hostkey = reinterpret_cast<const git_cert_hostkey*>(cert);
    if (!(hostkey->type & GIT_CERT_SSH_RAW) || !given.auth->check_host) {
        given.host_error = "the agent cannot check the server's host key";
        return GIT_ECERTIFICATE;
    }
    const std::string blob(hostkey->hostkey, hostkey->hostkey_len);
    const auto type = common::key_type_of(blob);
    if (type.empty()) {
        given.host_error = "the server's host key is malformed";
        return GIT_ECERTIFICATE;
    }
    if (auto trusted = given.auth->check_host(given.host, type + " " + common::base64(blob));
        !trusted) {
        given.host_error = trusted.error().message;
        return GIT_ECERTIFICATE;
    }
    return 0;
}

struct Repository {
    git_repository* repo = nullptr;
    ~Repository() { git_repository_free(repo); }
};

// The deploy key in a file of its own (0600) for the fetch's time.
struct KeyFile {
    std::filesystem::path path;
    ~KeyFile() {
        if (!path.empty()) {
            std::error_code ignored;
            std::filesystem::remove(path, ignored);
        }
    }
};

common::Status write_key_file(const FetchAuth& auth, KeyFile& file) {
    TRY_ASSIGN(auto tag, common::random_hex(8));
    file.path = auth.key_dir / fmt::format("deploy-key.tmp-{}-{}", ::getpid(), tag);
    const int fd = ::open(file.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        const int error = errno;
        file.path.clear();
        return make_error(common::io_error_kind(error),
                          fmt::format("cannot write the deploy key for the fetch in {}: {}",
                                      auth.key_dir.string(), common::os_error_text(error)));
    }
    const bool written = common::write_all(fd, auth.ssh_key_pem);
    const int error = errno;
    ::close(fd);
    if (!written)
        return make_error(common::io_error_kind(error),
                          fmt::format("cannot write the deploy key for the fetch: {}",
                                      common::os_error_text(error)));
    return {};
}

} // namespace

std::string ssh_host_of(const std::string& url) {
    if (url.rfind("ssh://", 0) == 0) {
        const auto path = url.find('/', 6);
        auto authority = url.substr(6, path == std::string::npos ? path : path - 6);
        if (const auto at = authority.rfind('@'); at != std::string::npos)
            authority = authority.substr(at + 1);
        if (authority.size() > 3 && authority.compare(authority.size() - 3, 3, ":22") == 0)
            authority.resize(authority.size() - 3);
        return authority;
    }
    auto host = url.substr(0, url.find(':'));
    if (const auto at = host.rfind('@'); at != std::string::npos)
        host = host.substr(at + 1);
    return host;
}

common::Status fetch_ref(const std::filesystem::path& repository, const std::string& url,
                         const std::string& source, const std::string& destination,
                         const FetchAuth& auth) {
    TRY(ensure_repository(repository));
    const bool ssh = common::is_ssh_git_url(url);
    if (ssh && !(git_libgit2_features() & GIT_FEATURE_SSH))
        return make_error(ErrorKind::usage, "this agent's libgit2 has no ssh support: give "
                                            "[git] url an https:// URL");
    Credentials given;
    given.auth = &auth;
    KeyFile key_file;
    if (ssh) {
        if (auth.ssh_key_pem.empty())
            return make_error(ErrorKind::usage, "an ssh [git] url needs the app's deploy key "
                                                "(deployctl hooks key)");
        TRY(write_key_file(auth, key_file));
        given.key_file = key_file.path.string();
        given.host = ssh_host_of(url);
    }
    Repository open;
    if (git_repository_open_bare(&open.repo, repository.c_str()) != 0)
        return make_error(ErrorKind::io,
                          fmt::format("cannot open the repository {}: {}", repository.string(),
                                      common::git::last_error()));
    git_remote* remote = nullptr;
    if (git_remote_create_anonymous(&remote, open.repo, url.c_str()) != 0)
        return make_error(ErrorKind::usage,
                          fmt::format("cannot use {}: {}", url, common::git::last_error()));
    std::string refspec = fmt::format("+{}:{}", source, destination);
    char* specs[] = {refspec.data()};
    const git_strarray refspecs{specs, 1};
    git_fetch_options options = GIT_FETCH_OPTIONS_INIT;
    options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    options.callbacks.credentials = credentials;
    options.callbacks.certificate_check = check_certificate;
    options.callbacks.payload = &given;
    const int rc = git_remote_fetch(remote, &refspecs, &options, "deploy-agent webhook fetch");
    std::string reason = rc != 0 ? common::git::last_error() : "";
    const std::string detail =
        reason.empty() || reason == "unknown libgit2 error" ? std::string() : " (" + reason + ")";
    if (!given.host_error.empty())
        reason = given.host_error;
    else if (ssh && (rc == GIT_EAUTH || (rc != 0 && given.asked > 0)))
        reason = "the server refused the app's deploy key: add it to the repository's deploy "
                 "keys (deployctl hooks key prints it)" +
                 detail;
    else if (rc == GIT_EAUTH || (rc != 0 && given.asked > 0))
        reason = auth.token.empty()
                     ? "the repository asks for credentials: name a secret of the app holding a "
                       "token in deploy.toml's [git] token"
                     : "the repository refused the token of [git] token" + detail;
    git_remote_free(remote);
    if (rc != 0)
        return make_error(ErrorKind::connection,
                          fmt::format("cannot fetch {} from {}: {}", source, url, reason));
    return {};
}

namespace {

// Fetches of one app's repository run one at a time (two would race for its refs), each on
// a thread of its own: a remote that stops answering costs that thread, never the caller's
// answer (fetch_within's timeout) nor the next fetches of the app (refused while it lasts).
struct FetchSlot {
    std::mutex mutex;
    bool busy = false;
};

FetchSlot& fetch_slot(const std::string& app) {
    static std::mutex guard;
    static std::map<std::string, std::shared_ptr<FetchSlot>> by_app;
    std::lock_guard lock(guard);
    auto& slot = by_app[app];
    if (!slot)
        slot = std::make_shared<FetchSlot>();
    return *slot;
}

} // namespace

common::Status fetch_within(const std::string& app, const std::filesystem::path& repository,
                            const std::string& url, const std::string& source,
                            const std::string& destination, const FetchAuth& auth,
                            std::chrono::milliseconds timeout) {
    auto& slot = fetch_slot(app);
    {
        std::lock_guard lock(slot.mutex);
        if (slot.busy)
            return make_error(ErrorKind::refused,
                              fmt::format("a fetch of {} is still running (a remote that does "
                                          "not answer?); try the delivery again later",
                                          app));
        slot.busy = true;
    }
    auto result = std::make_shared<std::promise<common::Status>>();
    auto done = result->get_future();
    std::thread([&slot, result, repository, url, source, destination, auth] {
        auto fetched = fetch_ref(repository, url, source, destination, auth);
        {
            std::lock_guard lock(slot.mutex);
            slot.busy = false;
        }
        result->set_value(std::move(fetched));
    }).detach();
    if (done.wait_for(timeout) != std::future_status::ready)
        return make_error(ErrorKind::timeout,
                          fmt::format("fetching {} from {} took more than {} "
                                      "(--git-fetch-timeout)",
                                      source, url, common::format_duration(timeout)));
    return done.get();
}

common::Status remove_ref(const std::filesystem::path& repository, const std::string& ref) {
    common::git::init_libgit2();
    Repository open;
    if (git_repository_open_bare(&open.repo, repository.c_str()) != 0)
        return {}; // no repository: nothing to remove
    const int rc = git_reference_remove(open.repo, ref.c_str());
    if (rc != 0 && rc != GIT_ENOTFOUND)
        return make_error(ErrorKind::io,
                          fmt::format("cannot remove {} from {}: {}", ref, repository.string(),
                                      common::git::last_error()));
    return {};
}

bool has_commit(const std::filesystem::path& repository, const std::string& commit) {
    common::git::init_libgit2();
    Repository open;
    git_oid oid;
    git_commit* found = nullptr;
    if (git_repository_open_bare(&open.repo, repository.c_str()) != 0 ||
        git_oid_fromstr(&oid, commit.c_str()) != 0 ||
        git_commit_lookup(&found, open.repo, &oid) != 0)
        return false;
    git_commit_free(found);
    return true;
}

} // namespace agent::git
