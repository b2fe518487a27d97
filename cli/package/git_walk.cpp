// Walks a committed tree into manifest entries.

#include <cli/package/collect.hpp>
#include <common/hash.hpp>
#include <common/parallel.hpp>
#include <common/storable_path.hpp>

#include <fmt/format.h>
#include <git2.h>

#include <mutex>
#include <optional>
#include <unordered_map>

namespace cli::package::detail {

namespace {

struct Walk {
    git_repository* repo = nullptr;
    Collected* out = nullptr;
    std::unordered_map<std::string, DigestCache::Known> digest_of_oid; // hash each blob once
    std::optional<common::Error> error;
    // Files whose blob nobody hashed yet: read and hashed after the walk, in parallel.
    struct Unhashed {
        std::string path;
        std::string oid;
    };
    std::vector<Unhashed> unhashed;
};

std::string git_error_text() {
    const git_error* e = git_error_last();
    return e && e->message ? e->message : "unknown error";
}

common::Result<DigestCache::Known> hash_blob(git_repository* repo, const std::string& oid,
                                             const std::string& path) {
    git_oid id;
    git_blob* blob = nullptr;
    if (git_oid_fromstr(&id, oid.c_str()) != 0 || git_blob_lookup(&blob, repo, &id) != 0)
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot read {} from git: {}",
                                              common::escape_path(path), git_error_text()));
    std::string_view content(static_cast<const char*>(git_blob_rawcontent(blob)),
                             static_cast<std::size_t>(git_blob_rawsize(blob)));
    DigestCache::Known known{common::sha256_hex(content), content.size()};
    git_blob_free(blob);
    return known;
}

// Hashes the distinct blobs the walk left: on a thread per core (up to 4), each with its
// own handle on the repository (libgit2 objects are not shared between threads).
common::Status hash_unhashed(Walk& walk) {
    std::vector<const Walk::Unhashed*> todo;
    std::unordered_map<std::string, DigestCache::Known> hashed;
    for (const auto& u : walk.unhashed)
        if (hashed.emplace(u.oid, DigestCache::Known{}).second)
            todo.push_back(&u);
    // A repository handle per thread: this walk's for the first, one opened for each other.
    std::vector<git_repository*> repos{walk.repo};
    struct FreeRepos {
        std::vector<git_repository*>& repos;
        ~FreeRepos() {
            for (std::size_t i = 1; i < repos.size(); ++i)
                git_repository_free(repos[i]);
        }
    } free_repos{repos};
    const std::string path = git_repository_path(walk.repo);
    for (std::size_t w = 1; w < common::worker_count(todo.size(), 32, 4); ++w) {
        git_repository* own = nullptr;
        if (git_repository_open(&own, path.c_str()) != 0)
            break; // fewer threads
        repos.push_back(own);
    }
    std::mutex mutex;
    TRY(common::parallel_for(
        todo.size(), repos.size(), [&](std::size_t worker, std::size_t i) -> common::Status {
            TRY_ASSIGN(auto known, hash_blob(repos[worker], todo[i]->oid, todo[i]->path));
            std::lock_guard lock(mutex);
            hashed[todo[i]->oid] = std::move(known);
            return {};
        }));
    for (const auto& u : walk.unhashed) {
        const auto& known = hashed.at(u.oid);
        auto& m = walk.out->entries.at(u.path);
        m.digest = known.digest;
        m.size = known.size;
        walk.out->sources.try_emplace(m.digest, BlobSource{u.oid, {}});
        if (walk.out->cache)
            walk.out->cache->add(DigestCache::git_key(u.oid), m.digest, m.size);
    }
    return {};
}

common::Status add_blob(Walk& walk, const std::string& path, const git_tree_entry* entry,
                        git_filemode_t mode) {
    common::ManifestEntry m;
    m.path = path;
    const std::string oid = git_oid_tostr_s(git_tree_entry_id(entry));
    if (mode != GIT_FILEMODE_LINK) {
        m.kind = mode == GIT_FILEMODE_BLOB_EXECUTABLE ? common::EntryKind::executable
                                                      : common::EntryKind::file;
        // A blob hashed before (this walk, or an earlier deploy's) is not read again.
        auto known = walk.digest_of_oid.find(oid);
        if (known == walk.digest_of_oid.end() && walk.out->cache)
            if (auto cached = walk.out->cache->find(DigestCache::git_key(oid)))
                known = walk.digest_of_oid.emplace(oid, *cached).first;
        if (known != walk.digest_of_oid.end()) {
            m.digest = known->second.digest;
            m.size = known->second.size;
            walk.out->sources.try_emplace(m.digest, BlobSource{oid, {}});
        } else {
            walk.unhashed.push_back({path, oid}); // hashed after the walk
        }
        walk.out->entries[path] = std::move(m);
        return {};
    }
    git_blob* blob = nullptr;
    if (git_blob_lookup(&blob, walk.repo, git_tree_entry_id(entry)) != 0) {
        const git_error* e = git_error_last();
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot read {} from git: {}",
                                              common::escape_path(path),
                                              e && e->message ? e->message : "unknown error"));
    }
    std::string_view content(static_cast<const char*>(git_blob_rawcontent(blob)),
                             static_cast<std::size_t>(git_blob_rawsize(blob)));
    m.kind = common::EntryKind::symlink; // files returned above
    m.target = std::string(content);
    git_blob_free(blob);
    walk.out->entries[path] = std::move(m);
    return {};
}

int visit(const char* root, const git_tree_entry* entry, void* payload) {
    auto& walk = *static_cast<Walk*>(payload);
    std::string path = std::string(root) + git_tree_entry_name(entry);
    git_filemode_t mode = git_tree_entry_filemode(entry);
    switch (mode) {
    case GIT_FILEMODE_TREE:
        return 0;
    case GIT_FILEMODE_COMMIT:
        walk.out->warnings.push_back(fmt::format(
            "skipping submodule {} (submodules are not deployed)", common::escape_path(path)));
        return 0;
    case GIT_FILEMODE_BLOB:
    case GIT_FILEMODE_BLOB_EXECUTABLE:
    case GIT_FILEMODE_LINK:
        if (auto st = add_blob(walk, path, entry, mode); !st) {
            walk.error = st.error();
            return -1;
        }
        return 0;
    default:
        walk.out->warnings.push_back(fmt::format("skipping {}: unknown git file mode {:o}",
                                                 common::escape_path(path),
                                                 static_cast<unsigned>(mode)));
        return 0;
    }
}

} // namespace

common::Status walk_tree(git_repository* repo, git_tree* tree, Collected& out) {
    Walk walk{repo, &out, {}, {}, {}};
    int rc = git_tree_walk(tree, GIT_TREEWALK_PRE, visit, &walk);
    if (walk.error)
        return *walk.error;
    if (rc != 0)
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot walk the git tree: {}", git_error_text()));
    return hash_unhashed(walk);
}

} // namespace cli::package::detail
