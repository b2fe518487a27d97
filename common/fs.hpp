#pragma once
// File helpers with the durability docs/design.md §7 asks for.

#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace common {

// Writes `content` to a temporary file beside `path`, fsyncs it, renames it
// over `path` and fsyncs the directory: readers see the old or the new file.
Status atomic_write_file(const std::filesystem::path& path, std::string_view content,
                         unsigned mode = 0644);
// Writes `content` to `path` without syncing it: for caches and hints, whose loss only
// costs time. `append`: one write(2) with O_APPEND (two writers never interleave their
// lines); otherwise through a temporary file renamed over `path` (readers see the old or
// the new file).
Status write_unsynced(const std::filesystem::path& path, std::string_view content, bool append);
Result<std::string> read_file(const std::filesystem::path& path);
// Writes all of `bytes` to a blocking descriptor, again after EINTR; false on an error
// (errno says which) or when nothing more can be written.
bool write_all(int fd, std::string_view bytes);
// Reads `fd` to its end into `out` (sized for `size_hint` bytes first: a regular file's
// size), again after EINTR; false on an error (errno says which).
bool read_all(int fd, std::string& out, std::size_t size_hint);
// The bytes of `path` when it is a regular file itself (a symbolic link is not followed)
// whose size `wanted` accepts, else nullopt: missing, another kind of file, unreadable, or
// not wanted. Never blocks on a FIFO. For a working copy read only when it may hold bytes
// known from elsewhere (the caller checks them).
std::optional<std::string> read_regular_file(const std::filesystem::path& path,
                                             const std::function<bool(std::uint64_t)>& wanted);
// The system's text for an error number; for ENOSPC and EDQUOT it also says
// plainly that the disk is full ("No space left on device: the disk is full ...").
std::string os_error_text(int error);
// ErrorKind::disk_full for ENOSPC and EDQUOT (deployctl exits 6), else io.
ErrorKind io_error_kind(int error);
// Removes the temporary files atomic_write_file left in `dir` (not below it)
// when it failed and could not remove them ("NAME.tmp-PID-HEX"), except those
// of a running process (it may be writing them). Returns how many went.
std::size_t remove_temp_files(const std::filesystem::path& dir);
// fsync a directory so that a rename in it is durable.
Status fsync_dir(const std::filesystem::path& dir);
// Creates `dir` (and its parents) when it is missing and gives it `perms`; an
// existing directory is left as it is. ErrorKind::io naming the folder.
Status ensure_directory(const std::filesystem::path& dir, std::filesystem::perms perms);

} // namespace common
