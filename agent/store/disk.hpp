#pragma once
// The disk guard (docs/agent-config.md, --min-free): before the agent takes an
// upload or starts a build it checks the free space of the data dir's file
// system against what the step needs plus a reserve, and refuses up front with
// ErrorKind::disk_full (HTTP 507, deployctl exits 6) when it is short.

#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace agent {

struct DiskSpace {
    std::uint64_t free = 0;       // bytes an unprivileged writer may still use (f_bavail)
    std::uint64_t size = 0;       // the file system's size
    std::uint64_t free_files = 0; // files (inodes) it may still create (f_favail)
    std::uint64_t files = 0;      // the file system's inodes; 0 where it has no fixed count
};

common::Result<DiskSpace> disk_space(const std::filesystem::path& path);

// What stays free: a size ("1G", "0") or a share of the file system ("5%").
// The default is the smaller of 1 GiB and 5%, so a small disk is not full from
// the start.
struct MinFree {
    std::uint64_t bytes = 1ull << 30;
    double percent = 5;
    bool both = true; // the default: the smaller of the two

    std::uint64_t reserve(std::uint64_t filesystem_size) const;
    std::string describe() const; // "1.0 GiB or 5%", "64.0 MiB", "10%"
};

// "0", "512m", "1g", "10%" (ErrorKind::config with the reason otherwise).
common::Result<MinFree> parse_min_free(std::string_view text);

class DiskGuard {
  public:
    DiskGuard() = default;
    DiskGuard(std::filesystem::path dir, MinFree min_free)
        : m_dir(std::move(dir)), m_min_free(min_free) {}

    // OK when `bytes` more fit and the reserve stays free; else disk_full:
    // "the agent's disk is full: 12.0 MiB free in DIR, WHAT needs 95.0 MiB (and
    // 3.2 MiB is kept free: deploy-agent --min-free)". A file system whose
    // space cannot be read is not refused (the write itself will tell).
    // `files`: the files the step creates. A file system with a fixed count of inodes (ext4)
    // can run out of them while bytes remain (a tree of many small files, kept a few times):
    // they are checked the same way, the reserve keeping the same share of them as of the
    // bytes.
    common::Status check(std::uint64_t bytes, std::string_view what, std::uint64_t files = 0) const;
    const std::filesystem::path& dir() const { return m_dir; }
    const MinFree& min_free() const { return m_min_free; }

  private:
    std::filesystem::path m_dir;
    MinFree m_min_free;
};

// The inodes kept free with `reserve` bytes: the same share of the inodes as of the bytes.
std::uint64_t inode_reserve(const DiskSpace& space, std::uint64_t reserve);

// DiskGuard::check's decision for a file system whose space is `space`.
common::Status check_space(const DiskSpace& space, const MinFree& min_free,
                           const std::filesystem::path& dir, std::uint64_t bytes,
                           std::uint64_t files, std::string_view what);

} // namespace agent
