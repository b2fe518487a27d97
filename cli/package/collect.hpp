#pragma once
// Internal to cli/package: the pieces git_tree.cpp puts together. Only the
// libgit2 types are named here (opaque); git2.h stays in the .cpp files.

#include <common/git/walk.hpp>
#include <common/manifest.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

struct git_repository;

namespace cli::package::detail {

using common::git::BlobSource;
using common::git::Collected;
using common::git::DigestCache;

// The lines of `text`, without their '\n' (a last line without one included).
std::vector<std::string_view> split_lines(std::string_view text);

// Paths (relative to the repository) under `prefix` that differ from HEAD:
// modified, staged, deleted or untracked and not ignored. An untracked folder is one
// path ("dir/", as git status shows it) unless `each_untracked_file`.
common::Result<std::vector<std::string>>
changed_paths(git_repository* repo, const std::string& prefix, bool each_untracked_file);

// Replaces the changed paths with what is on disk (removing deleted ones).
common::Status overlay_worktree(const std::filesystem::path& workdir, const std::string& prefix,
                                const std::vector<std::string>& changed, Collected& out);

} // namespace cli::package::detail
