#include <agent/git/repository.hpp>
#include <common/command_line.hpp>
#include <common/fs.hpp>
#include <common/git/walk.hpp>
#include <common/hash.hpp>

#include <fmt/format.h>
#include <git2.h>

namespace agent::git {

namespace {

using common::ErrorKind;
using common::make_error;
namespace fs = std::filesystem;

template <class T, void (*Free)(T*)> struct Owned {
    T* ptr = nullptr;
    Owned() = default;
    Owned(const Owned&) = delete;
    Owned& operator=(const Owned&) = delete;
    ~Owned() { Free(ptr); }
};

common::Error git_failure(const std::string& what) {
    return make_error(ErrorKind::io, fmt::format("{}: {}", what, common::git::last_error()));
}

std::string first_line(const char* message) {
    std::string text = message ? message : "";
    if (auto nl = text.find('\n'); nl != std::string::npos)
        text.resize(nl);
    return text;
}

// An open repository kept for reading files of the packaged commit later.
struct OpenRepository {
    git_repository* repo = nullptr;
    std::map<std::string, common::git::BlobSource> sources;
    std::mutex mutex; // libgit2 objects are not shared between threads
    ~OpenRepository() { git_repository_free(repo); }
};

} // namespace

common::Status ensure_repository(const fs::path& path) {
    common::git::init_libgit2();
    std::error_code ec;
    if (fs::exists(path / "HEAD", ec))
        return {};
    TRY(common::ensure_directory(path.parent_path(), fs::perms::owner_all));
    git_repository* repo = nullptr;
    if (git_repository_init(&repo, path.c_str(), /*is_bare=*/1) != 0)
        return git_failure("cannot create the repository " + path.string());
    git_repository_free(repo);
    return {};
}

common::Status write_hooks(const DataDir& data, const fs::path& agent_program) {
    if (agent_program.empty())
        return make_error(ErrorKind::io, "cannot find the agent's program (/proc/self/exe)");
    TRY(common::ensure_directory(data.git_hooks(), fs::perms::owner_all));
    const std::string script =
        fmt::format("#!/bin/sh\n# Written by deploy-agent at each start: a push deploys from here "
                    "(docs/git.md).\nexec {} git-hook pre-receive\n",
                    common::shell_quote(agent_program.string()));
    return common::atomic_write_file(data.git_hooks() / "pre-receive", script, 0700);
}

common::Result<std::string> Pushes::begin(Push push) {
    TRY_ASSIGN(auto id, common::random_hex(16));
    std::lock_guard lock(m_mutex);
    m_pushes[id] = std::move(push);
    return id;
}

std::optional<Push> Pushes::find(const std::string& id) const {
    std::lock_guard lock(m_mutex);
    auto it = m_pushes.find(id);
    if (it == m_pushes.end())
        return std::nullopt;
    return it->second;
}

void Pushes::end(const std::string& id) {
    std::lock_guard lock(m_mutex);
    m_pushes.erase(id);
}

common::Result<std::shared_ptr<PackagedCommit>>
package_commit(const fs::path& repository, const fs::path& quarantine, const std::string& commit) {
    common::git::init_libgit2();
    auto open = std::make_shared<OpenRepository>();
    if (git_repository_open_bare(&open->repo, repository.c_str()) != 0)
        return git_failure("cannot open the repository " + repository.string());
    if (!quarantine.empty())
        TRY(common::git::add_alternate(open->repo, quarantine));
    git_oid oid;
    Owned<git_commit, git_commit_free> found;
    if (git_oid_fromstr(&oid, commit.c_str()) != 0 ||
        git_commit_lookup(&found.ptr, open->repo, &oid) != 0)
        return git_failure("cannot read commit " + commit);
    Owned<git_tree, git_tree_free> tree;
    if (git_commit_tree(&tree.ptr, found.ptr) != 0)
        return git_failure("cannot read the tree of commit " + commit);

    auto packaged = std::make_shared<PackagedCommit>();
    packaged->commit = git_oid_tostr_s(git_commit_id(found.ptr));
    packaged->message = first_line(git_commit_message(found.ptr));
    common::git::Collected collected;
    // Hashed once per file across pushes, as deployctl's .git/deployctl/digests.
    common::git::DigestCache cache(repository / "deployctl" / "digests");
    collected.cache = &cache;
    collected.alternate_objects = quarantine;
    TRY(common::git::walk_tree(open->repo, tree.ptr, collected));
    std::error_code ec;
    fs::create_directories(repository / "deployctl", ec);
    cache.save();
    for (auto& [path, entry] : collected.entries) {
        if (path == "deploy.toml" && entry.kind != common::EntryKind::symlink)
            if (auto source = collected.sources.find(entry.digest);
                source != collected.sources.end()) {
                TRY_ASSIGN(packaged->config_text,
                           common::git::read_blob(open->repo, source->second.git_oid));
            }
        packaged->manifest.entries.push_back(std::move(entry));
    }
    packaged->warnings = std::move(collected.warnings);
    open->sources = std::move(collected.sources);
    packaged->read = [open](const std::string& digest) -> common::Result<std::string> {
        auto it = open->sources.find(digest);
        if (it == open->sources.end())
            return make_error(ErrorKind::internal, "no file with digest " + digest);
        std::lock_guard lock(open->mutex);
        return common::git::read_blob(open->repo, it->second.git_oid);
    };
    return packaged;
}

} // namespace agent::git
