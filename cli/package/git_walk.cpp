// Walks a committed tree into manifest entries.

#include <cli/package/collect.hpp>
#include <common/hash.hpp>
#include <common/storable_path.hpp>

#include <fmt/format.h>
#include <git2.h>

#include <unordered_map>

namespace cli::package::detail {

namespace {

struct Walk {
    git_repository* repo = nullptr;
    Collected* out = nullptr;
    std::unordered_map<std::string, DigestCache::Known> digest_of_oid; // hash each blob once
    std::optional<common::Error> error;
};

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
            walk.out->entries[path] = std::move(m);
            return {};
        }
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
    if (mode == GIT_FILEMODE_LINK) {
        m.kind = common::EntryKind::symlink;
        m.target = std::string(content);
    } else {
        m.digest = common::sha256_hex(content);
        m.size = content.size();
        walk.digest_of_oid.emplace(oid, DigestCache::Known{m.digest, m.size});
        if (walk.out->cache)
            walk.out->cache->add(DigestCache::git_key(oid), m.digest, m.size);
        walk.out->sources.try_emplace(m.digest, BlobSource{oid, {}});
    }
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
    Walk walk{repo, &out, {}, {}};
    int rc = git_tree_walk(tree, GIT_TREEWALK_PRE, visit, &walk);
    if (walk.error)
        return *walk.error;
    if (rc != 0) {
        const git_error* e = git_error_last();
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot walk the git tree: {}",
                                              e && e->message ? e->message : "unknown error"));
    }
    return {};
}

} // namespace cli::package::detail
