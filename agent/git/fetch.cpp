#include <agent/git/fetch.hpp>
#include <agent/git/repository.hpp>
#include <common/git/walk.hpp>

#include <fmt/format.h>
#include <git2.h>

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

common::Status fetch_branch(const std::filesystem::path& repository, const std::string& url,
                            const std::string& branch, const std::string& token) {
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
    std::string refspec = fmt::format("+refs/heads/{0}:refs/heads/{0}", branch);
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
                          fmt::format("cannot fetch branch {} from {}: {}", branch, url, reason));
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
