#include <agent/git/fetch.hpp>
#include <agent/git/repository.hpp>
#include <common/duration.hpp>
#include <common/git/walk.hpp>

#include <fmt/format.h>
#include <git2.h>

#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace agent::git {

namespace {

using common::ErrorKind;
using common::make_error;

// libgit2 asks again after a refused password: the token is given once.
struct Credentials {
    const std::string* token = nullptr;
    int asked = 0;
};

int credentials(git_credential** out, const char* /*url*/, const char* /*username*/,
                unsigned int allowed, void* payload) {
    auto& given = *static_cast<Credentials*>(payload);
    if (given.token->empty() || given.asked++ > 0 || !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT))
        return GIT_EAUTH;
    return git_credential_userpass_plaintext_new(out, "x-access-token", given.token->c_str());
}

struct Repository {
    git_repository* repo = nullptr;
    ~Repository() { git_repository_free(repo); }
};

} // namespace

common::Status fetch_ref(const std::filesystem::path& repository, const std::string& url,
                         const std::string& source, const std::string& destination,
                         const std::string& token) {
    TRY(ensure_repository(repository));
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
    Credentials given{&token};
    options.callbacks.credentials = credentials;
    options.callbacks.payload = &given;
    const int rc = git_remote_fetch(remote, &refspecs, &options, "deploy-agent webhook fetch");
    std::string reason = rc != 0 ? common::git::last_error() : "";
    if (rc == GIT_EAUTH || (rc != 0 && given.asked > 0))
        reason = token.empty() ? "the repository asks for credentials: name a secret of the app "
                                 "holding a token in deploy.toml's [git] token"
                               : "the repository refused the token of [git] token (" + reason + ")";
    git_remote_free(remote);
    if (rc != 0)
        return make_error(ErrorKind::connection,
                          fmt::format("cannot fetch {} from {}: {}", source, url, reason));
    return {};
}

common::Status fetch_branch(const std::filesystem::path& repository, const std::string& url,
                            const std::string& branch, const std::string& token) {
    const auto ref = "refs/heads/" + branch;
    return fetch_ref(repository, url, ref, ref, token);
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
                            const std::string& destination, const std::string& token,
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
    std::thread([&slot, result, repository, url, source, destination, token] {
        auto fetched = fetch_ref(repository, url, source, destination, token);
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
