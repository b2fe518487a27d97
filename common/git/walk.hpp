#pragma once
// A committed git tree as manifest entries: what `deployctl deploy` packages and what the
// agent deploys from a push (agent/git/), the same files with the same modes. Only the
// libgit2 types are named here (opaque); git2.h stays in the .cpp files.

#include <common/git/digest_cache.hpp>
#include <common/manifest.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

struct git_repository;
struct git_tree;

namespace common::git {

// libgit2's global state, set up once for the process (idempotent).
void init_libgit2();
// libgit2's last error message on this thread ("unknown libgit2 error" when none).
std::string last_error();

// Where a blob's bytes can be read again.
struct BlobSource {
    std::string git_oid;             // a blob in the object database, or
    std::filesystem::path disk_path; // a file in the working directory
};

struct Collected {
    std::map<std::string, common::ManifestEntry> entries; // by path, relative to DIR
    std::map<std::string, BlobSource> sources;            // by digest
    std::vector<std::string> warnings;
    DigestCache* cache = nullptr; // digests known from earlier deploys (none: hash everything)
    // An object directory beside the repository's own (a push's quarantine): the walk's
    // extra repository handles see it too.
    std::filesystem::path alternate_objects;
    // The checked-out folder the entries' paths are relative to (none: a bare repository):
    // a blob not in `cache` is read there when git's id of the file is the blob's.
    std::filesystem::path worktree;
};

// Adds every blob, executable and symlink of `tree` (skipping submodules).
common::Status walk_tree(git_repository* repo, git_tree* tree, Collected& out);

// The content of a blob by its git object id (hex).
common::Result<std::string> read_blob(git_repository* repo, const std::string& oid);

// Adds `objects` to the object directories `repo` reads from.
common::Status add_alternate(git_repository* repo, const std::filesystem::path& objects);

} // namespace common::git
