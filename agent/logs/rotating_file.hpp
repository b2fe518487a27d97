#pragma once
// An app's log file that rotates by size (deploy.toml [logs], docs/deploy-toml.md):
// once PATH reaches max_size it becomes PATH.1.zst (zstd-compressed; the older
// PATH.1.zst becomes PATH.2.zst, and so on, keeping `keep` of them) and a new
// PATH starts. On disk that is at most about max_size × (keep + 1).
//
// Several writers may share one PATH (the instances of a process, each with its
// writer): each appends (O_APPEND), and before each write checks that its file
// is still PATH, opening the new one when another writer rotated it.

#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace agent::logs {

struct Rotation {
    std::uint64_t max_size = 0; // 0: never rotated
    int keep = 5;               // compressed files kept
};

class RotatingFile {
  public:
    RotatingFile(std::filesystem::path path, Rotation rotation);
    ~RotatingFile();
    RotatingFile(const RotatingFile&) = delete;
    RotatingFile& operator=(const RotatingFile&) = delete;

    // Appends all of `text`, then rotates when the file has reached max_size.
    // A write that fails says why (ENOSPC: ErrorKind::disk_full).
    common::Status write(std::string_view text);
    const std::filesystem::path& path() const { return m_path; }

  private:
    common::Status ensure_open();
    common::Status rotate();

    std::filesystem::path m_path;
    Rotation m_rotation;
    int m_fd = -1;
    std::uint64_t m_inode = 0;
};

// PATH.N.zst for generation N (1: the newest rotated one).
std::filesystem::path rotated_path(const std::filesystem::path& path, int generation);
// The rotated files of PATH that exist, oldest first (PATH itself not included).
std::vector<std::filesystem::path> rotated_files(const std::filesystem::path& path);
// The content of a log file, decompressed when its name ends in ".zst".
common::Result<std::string> read_log_file(const std::filesystem::path& path);
// The same in pieces (at most 1 MiB each), never held whole: `each` gets them
// in order until it returns false.
common::Status read_log_pieces(const std::filesystem::path& path,
                               const std::function<bool(std::string_view)>& each);

} // namespace agent::logs
