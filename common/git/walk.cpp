// Walks a committed tree into manifest entries.

#include <common/fs.hpp>
#include <common/git/walk.hpp>
#include <common/hash.hpp>
#include <common/parallel.hpp>
#include <common/storable_path.hpp>

#include <fmt/format.h>
#include <git2.h>
#include <openssl/evp.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace common::git {

namespace {

struct Walk {
    git_repository* repo = nullptr;
    Collected* out = nullptr;
    std::optional<common::Error> error;
    // Files whose blob nobody hashed yet: read and hashed after the walk, in parallel.
    struct Unhashed {
        std::string path;
        std::string oid;
    };
    std::vector<Unhashed> unhashed;
};

// A blob's digest and size, as hashed here.
struct Hashed {
    std::string digest;
    std::uint64_t size = 0;
};

// Whether `content` is the blob `oid` names: git's object id of it ("blob SIZE\0" then the
// bytes, SHA-1; OpenSSL's, several times faster than libgit2's collision-detecting one).
bool is_blob(std::string_view content, const std::string& oid) {
    const std::string header = fmt::format("blob {}", content.size());
    unsigned char id[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr) == 1 &&
                    EVP_DigestUpdate(ctx, header.data(), header.size() + 1) == 1 && // and its NUL
                    EVP_DigestUpdate(ctx, content.data(), content.size()) == 1 &&
                    EVP_DigestFinal_ex(ctx, id, &length) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || length != GIT_OID_RAWSZ)
        return false;
    git_oid expected;
    return git_oid_fromstr(&expected, oid.c_str()) == 0 &&
           std::memcmp(expected.id, id, GIT_OID_RAWSZ) == 0;
}

// The size of blob `oid` from its header in git (no inflating of the whole), if it can tell.
std::optional<std::uint64_t> blob_size(git_repository* repo, const std::string& oid) {
    git_oid id;
    git_odb* odb = nullptr;
    if (git_oid_fromstr(&id, oid.c_str()) != 0 || git_repository_odb(&odb, repo) != 0)
        return std::nullopt;
    std::size_t size = 0;
    git_object_t type{};
    const int rc = git_odb_read_header(&size, &type, odb, &id);
    git_odb_free(odb);
    if (rc != 0)
        return std::nullopt;
    return size;
}

// From this size on, a working copy is read only when git says the blob has its size: a
// large file git stores as something else (a git-lfs pointer, a filter's output) is not
// read whole for nothing.
constexpr std::uint64_t k_size_checked_from = 1 << 20;

// The working copy's file, hashed, when it holds the blob's bytes: reading it costs less
// than inflating the blob from git, and git's own id of it proves it the same.
std::optional<Hashed> hash_if_same(git_repository* repo, const std::filesystem::path& file,
                                   const std::string& oid) {
    const auto bytes = common::read_regular_file(file, [&](std::uint64_t size) {
        return size < k_size_checked_from || blob_size(repo, oid) == size;
    });
    if (!bytes || !is_blob(*bytes, oid))
        return std::nullopt;
    return Hashed{common::sha256_hex(*bytes), bytes->size()};
}

common::Result<Hashed> hash_blob(git_repository* repo, const std::string& oid,
                                 const std::string& path, const std::filesystem::path& worktree) {
    if (!worktree.empty())
        if (auto same = hash_if_same(repo, worktree / path, oid))
            return std::move(*same);
    git_oid id;
    git_blob* blob = nullptr;
    if (git_oid_fromstr(&id, oid.c_str()) != 0 || git_blob_lookup(&blob, repo, &id) != 0)
        return common::make_error(
            common::ErrorKind::io,
            fmt::format("cannot read {} from git: {}", common::escape_path(path), last_error()));
    std::string_view content(static_cast<const char*>(git_blob_rawcontent(blob)),
                             static_cast<std::size_t>(git_blob_rawsize(blob)));
    Hashed known{common::sha256_hex(content), content.size()};
    git_blob_free(blob);
    return known;
}

// Hashes the distinct blobs the walk left: on a thread per core (up to 4), each with its
// own handle on the repository (libgit2 objects are not shared between threads).
common::Status hash_unhashed(Walk& walk) {
    std::vector<const Walk::Unhashed*> todo;
    std::unordered_map<std::string, Hashed> hashed;
    for (const auto& u : walk.unhashed)
        if (hashed.emplace(u.oid, Hashed{}).second)
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
        if (!walk.out->alternate_objects.empty())
            TRY(add_alternate(own, walk.out->alternate_objects));
    }
    std::mutex mutex;
    TRY(common::parallel_for(
        todo.size(), repos.size(), [&](std::size_t worker, std::size_t i) -> common::Status {
            TRY_ASSIGN(auto known,
                       hash_blob(repos[worker], todo[i]->oid, todo[i]->path, walk.out->worktree));
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

common::Status add_blob(Walk& walk, std::string path, const git_tree_entry* entry,
                        git_filemode_t mode) {
    common::ManifestEntry m;
    char oid[GIT_OID_HEXSZ + 1];
    git_oid_tostr(oid, sizeof oid, git_tree_entry_id(entry));
    if (mode != GIT_FILEMODE_LINK) {
        m.kind = mode == GIT_FILEMODE_BLOB_EXECUTABLE ? common::EntryKind::executable
                                                      : common::EntryKind::file;
        // A blob hashed by an earlier deploy is not read again (this walk's are hashed
        // once each, after it).
        if (const auto* known = walk.out->cache ? walk.out->cache->find_git(oid) : nullptr) {
            m.digest = known->digest;
            m.size = known->size;
            walk.out->sources.try_emplace(m.digest, BlobSource{oid, {}});
        } else {
            walk.unhashed.push_back({path, oid}); // hashed after the walk
        }
    } else {
        auto target = read_blob(walk.repo, oid);
        if (!target)
            return common::make_error(common::ErrorKind::io,
                                      fmt::format("cannot read {} from git: {}",
                                                  common::escape_path(path),
                                                  target.error().message));
        m.kind = common::EntryKind::symlink;
        m.target = std::move(*target);
    }
    // A tree's walk comes in path order (git sorts a folder as its name and a slash): each
    // path goes at the end.
    m.path = path;
    walk.out->entries.emplace_hint(walk.out->entries.end(), std::move(path), std::move(m));
    return {};
}

int visit(const char* root, const git_tree_entry* entry, void* payload) {
    auto& walk = *static_cast<Walk*>(payload);
    std::string path = std::string(root).append(git_tree_entry_name(entry));
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
        if (auto st = add_blob(walk, std::move(path), entry, mode); !st) {
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

namespace {
struct LibGit {
    LibGit() { git_libgit2_init(); }
    ~LibGit() { git_libgit2_shutdown(); }
};
} // namespace

void init_libgit2() {
    static LibGit lib;
}

std::string last_error() {
    const git_error* e = git_error_last();
    return e && e->message ? e->message : "unknown libgit2 error";
}

common::Result<std::string> read_blob(git_repository* repo, const std::string& oid) {
    git_oid id;
    git_blob* blob = nullptr;
    if (git_oid_fromstr(&id, oid.c_str()) != 0 || git_blob_lookup(&blob, repo, &id) != 0)
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot read blob {}: {}", oid, last_error()));
    std::string content(static_cast<const char*>(git_blob_rawcontent(blob)),
                        static_cast<std::size_t>(git_blob_rawsize(blob)));
    git_blob_free(blob);
    return content;
}

common::Status add_alternate(git_repository* repo, const std::filesystem::path& objects) {
    git_odb* odb = nullptr;
    if (git_repository_odb(&odb, repo) != 0)
        return common::make_error(common::ErrorKind::io,
                                  "cannot open the object database: " + last_error());
    const int rc = git_odb_add_disk_alternate(odb, objects.c_str());
    git_odb_free(odb);
    if (rc != 0)
        return common::make_error(
            common::ErrorKind::io,
            fmt::format("cannot read objects from {}: {}", objects.string(), last_error()));
    return {};
}

common::Status walk_tree(git_repository* repo, git_tree* tree, Collected& out) {
    Walk walk{repo, &out, {}, {}};
    int rc = git_tree_walk(tree, GIT_TREEWALK_PRE, visit, &walk);
    if (walk.error)
        return *walk.error;
    if (rc != 0)
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot walk the git tree: {}", last_error()));
    return hash_unhashed(walk);
}

} // namespace common::git
