#pragma once
// Internal to cli/package: the pieces git_tree.cpp puts together. Only the
// libgit2 types are named here (opaque); git2.h stays in the .cpp files.

#include <cli/package/digest_cache.hpp>
#include <common/manifest.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

struct git_repository;
struct git_tree;

namespace cli::package::detail {

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
};

// The lines of `text`, without their '\n' (a last line without one included).
std::vector<std::string_view> split_lines(std::string_view text);

// Adds every blob, executable and symlink of `tree` (skipping submodules).
common::Status walk_tree(git_repository* repo, git_tree* tree, Collected& out);

// Paths (relative to the repository) under `prefix` that differ from HEAD:
// modified, staged, deleted or untracked and not ignored. An untracked folder is one
// path ("dir/", as git status shows it) unless `each_untracked_file`.
common::Result<std::vector<std::string>>
changed_paths(git_repository* repo, const std::string& prefix, bool each_untracked_file);

// Replaces the changed paths with what is on disk (removing deleted ones).
common::Status overlay_worktree(const std::filesystem::path& workdir, const std::string& prefix,
                                const std::vector<std::string>& changed, Collected& out);

} // namespace cli::package::detail
