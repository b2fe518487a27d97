#pragma once
// File helpers with the durability docs/design.md §7 asks for.

#include <common/result.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace common {

// Writes `content` to a temporary file beside `path`, fsyncs it, renames it
// over `path` and fsyncs the directory: readers see the old or the new file.
Status atomic_write_file(const std::filesystem::path& path, std::string_view content,
                         unsigned mode = 0644);
Result<std::string> read_file(const std::filesystem::path& path);
// fsync a directory so that a rename in it is durable.
Status fsync_dir(const std::filesystem::path& dir);
// Creates `dir` (and its parents) when it is missing and gives it `perms`; an
// existing directory is left as it is. ErrorKind::io naming the folder.
Status ensure_directory(const std::filesystem::path& dir, std::filesystem::perms perms);

} // namespace common
