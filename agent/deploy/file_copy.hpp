#pragma once
// Copies of files and trees on the agent's disk that share no data with their source: a
// reflink where the file system has them (btrfs, XFS: no data is copied, and a write to
// either copy leaves the other as it was), else copy_file_range (in the kernel), else read
// and write. Never a hard link unless asked: a build may write to the files of its release
// directory, and must not reach the store or the build cache.

#include <common/result.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

namespace agent {

// Sizes summed over a walk with each file once, however many names it has (a kept build
// and its release, a tree's own hard links): first() is true for a file with one link, and
// for the first name met of a file with several (by device and inode).
class LinkedOnce {
  public:
    bool first(const struct stat& st) {
        return st.st_nlink <= 1 || m_seen.emplace(st.st_dev, st.st_ino).second;
    }

  private:
    std::set<std::pair<dev_t, ino_t>> m_seen; // of files with several links
};

// What the copies of one tree learn of the file system they write to: one that refused a
// reflink (ext4) is not asked again for each file.
struct CopyMemo {
    std::atomic<bool> no_reflink{false};
};

// Copies the regular file `from` to the new file `to` with `mode`, whatever the umask;
// with `times` (access, modification), those times too. `size`: what `from` holds when
// it cannot change (a blob whose size was checked): the copy ends there instead of
// asking for more until the end of the file.
common::Status copy_file(const std::filesystem::path& from, const std::filesystem::path& to,
                         mode_t mode, const struct timespec* times = nullptr,
                         std::optional<std::uint64_t> size = std::nullopt,
                         CopyMemo* memo = nullptr);

// A tree as one walk saw it: what copy_snapshot copies (or links) later.
struct TreeEntry {
    std::filesystem::path relative; // below the root
    struct stat st {};
    std::string target; // a symlink's
};
struct TreeSnapshot {
    std::filesystem::path root;     // the folder (or file) walked
    struct stat st {};              // its own
    std::string target;             // a symlink's
    std::vector<TreeEntry> entries; // below it, each folder before its entries (sockets left out)
};
common::Result<TreeSnapshot> snapshot_tree(const std::filesystem::path& from);
// The entry of `tree` at `relative` (below its root); nullptr when the walk did not see it.
const TreeEntry* entry_at(const TreeSnapshot& tree, const std::filesystem::path& relative);
// The part of `tree` at `relative` (below its root) as a snapshot of its own; nullopt when
// the walk did not see it.
std::optional<TreeSnapshot> subtree(const TreeSnapshot& tree,
                                    const std::filesystem::path& relative);

// Copies the tree `from` to `to` (which must not exist) as `cp -a` does: folders, regular
// files (copy_file; `links`: hard links to them instead), symlinks as they are and FIFOs,
// with their modes and times, and owners where the agent may set them; files hard-linked
// to each other inside the tree stay so. Sockets are left out, extended attributes are not
// copied, a device file is an error. The files are copied on a few threads (file creation
// is most of the time, and the file system does it in parallel across folders). On
// failure nothing of `to` is left. `bytes`, when given: the size of the regular files
// copied, a file with several links inside the tree counted once. `cancel`, when given and
// set, stops the copy at its next file (an error; what was copied of `to` is left for the
// caller to remove, off the way of whatever cancelled it).
common::Status copy_tree(const std::filesystem::path& from, const std::filesystem::path& to,
                         bool links, std::uint64_t* bytes = nullptr,
                         const std::atomic<bool>* cancel = nullptr);
// copy_tree of the tree a snapshot saw, made now: its folders and files at their paths. With
// `links`, each file linked is the one the snapshot saw (its inode): one replaced since is an
// error, one added since is left out, and one changed in place is linked as it is now (a
// hard link shares its data anyway).
common::Status copy_snapshot(const TreeSnapshot& tree, const std::filesystem::path& to, bool links,
                             std::uint64_t* bytes = nullptr,
                             const std::atomic<bool>* cancel = nullptr);

} // namespace agent
