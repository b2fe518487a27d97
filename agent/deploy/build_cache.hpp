#pragma once
// An app's build cache on one agent (docs/build-cache.md), DATA/apps/APP/build-cache/:
//
//   lock            flock'ed by the one build (or `build-cache clear`) using the cache
//   dir/            $CACHE_DIR as the last successful build left it
//   build/          $CACHE_DIR of the build in progress: a copy of dir/, made before the
//                   build, which replaces dir/ when the build succeeds (so a failed or
//                   timed-out build never writes the cache, and $CACHE_DIR has one path)
//   paths/N/        the [build] cache path N of the last successful build ("node_modules"
//                   is paths/node_modules; "a/b" is paths/a%2Fb)
//   builds/KEY/     the output of a successful build whose inputs have the digest KEY (hard
//                   links to the files its release directory had after the build), reused
//                   by a build of the same inputs while a kept release has that key
//   builds/.ready-KEY/  a copy of builds/KEY made ahead (prepare_build), which its reuse
//                   renames into the release directory instead of copying while the deploy
//                   waits; trusted only by the process that made it (.ready-KEY.made)
//   next/           a copy of paths/ and dir/ made ahead, after a deploy, by this agent
//                   process (prepare): the next build's restore renames its parts into
//                   place instead of copying while the deploy waits. Trusted only while
//                   `version` is the one it was copied at (each change of paths/ or dir/
//                   writes a new one) and by the process that made it
//
// Copies into a release directory are real copies (a reflink where the file system has
// them): a build never writes to a file a serving release or the cache uses. Saving into
// the cache links the release's files (no data copied) and swaps the new copy in with one
// rename.

#include <agent/deploy/file_copy.hpp>
#include <common/result.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace agent {

struct BuildCacheEntry {
    std::string name;        // "node_modules"; a folder of $CACHE_DIR; a build's key
    std::string kind;        // "path" ([build] cache), "dir" ($CACHE_DIR), "build", "ready" (next/)
    std::uint64_t bytes = 0; // regular files, each counted once
    std::int64_t last_used = 0; // unix nanoseconds: its newest change, or its last use
    std::string release;        // kind "build": the release whose build made it
};

// The exclusive use of one app's cache (a build, or clearing it); released when destroyed.
class BuildCacheLock {
  public:
    BuildCacheLock() = default;
    explicit BuildCacheLock(int fd) : m_fd(fd) {}
    BuildCacheLock(BuildCacheLock&& other) noexcept : m_fd(other.m_fd) { other.m_fd = -1; }
    BuildCacheLock& operator=(BuildCacheLock&& other) noexcept;
    BuildCacheLock(const BuildCacheLock&) = delete;
    BuildCacheLock& operator=(const BuildCacheLock&) = delete;
    ~BuildCacheLock();

  private:
    int m_fd = -1;
};

class BuildCache {
  public:
    using Note = std::function<void(std::string_view)>;
    // The disk guard's answer for a copy of `bytes` in `files` files.
    using Room = std::function<common::Status(std::uint64_t bytes, std::uint64_t files)>;

    explicit BuildCache(std::filesystem::path root) : m_root(std::move(root)) {}
    const std::filesystem::path& root() const { return m_root; }
    // $CACHE_DIR of a build in progress.
    std::filesystem::path build_dir() const { return m_root / "build"; }

    // Waits for the cache (`wait`), or refuses (ErrorKind::conflict) while a build uses it.
    common::Result<BuildCacheLock> lock(bool wait) const;

    // Before a build, under the lock: each of `paths` the release's tree lacks copied
    // from the cache into `release_dir`, and $CACHE_DIR (build_dir()) made from the
    // last one (`fresh`: both left empty, deploy --no-cache).
    common::Status restore(const std::filesystem::path& release_dir,
                           const std::vector<std::string>& paths, bool fresh,
                           const Note& note) const;
    // After a successful build: `paths` of `release_dir` and $CACHE_DIR become the
    // cache, each replaced in one rename; then the cache is bounded to `max` bytes.
    common::Status save(const std::filesystem::path& release_dir,
                        const std::vector<std::string>& paths, std::uint64_t max,
                        const Note& note) const;
    // The same, of the release directory as `release` saw it right after the build (the
    // links made later, while the release starts: copy_snapshot).
    common::Status save(const TreeSnapshot& release, const std::vector<std::string>& paths,
                        std::uint64_t max, const Note& note) const;
    // After a failed build: its $CACHE_DIR goes, the cache stays as it was.
    void discard() const;

    // Off the builds' way (no lock held while it copies): next/ made, a copy of the cache
    // for the next build's restore, when the cache and the copy fit in `max` together and
    // `room` allows it; `cancel` stops it at its next file. Returns what it copied (bytes),
    // 0 when there was nothing to copy; an error when it made none (too large, no room, a
    // build or clear changed the cache meanwhile, cancelled).
    common::Result<std::uint64_t> prepare(std::uint64_t max, const Room& room,
                                          const std::atomic<bool>* cancel) const;

    // Drops the least recently used path and $CACHE_DIR entries until the rest is at
    // most `max` bytes; returns those dropped.
    std::vector<BuildCacheEntry> bound(std::uint64_t max) const;

    // The output of a successful build, kept under its inputs' digest for reuse.
    common::Status keep_build(const std::filesystem::path& release_dir, const std::string& key,
                              const std::string& release) const;
    common::Status keep_build(const TreeSnapshot& tree, const std::string& key,
                              const std::string& release) const;
    bool has_build(const std::string& key) const;
    // The kept output of `key` copied into `release_dir` (which must not exist): its copy
    // made ahead renamed there when there is one (`made_ahead` says), else copied now.
    common::Status reuse_build(const std::string& key, const std::filesystem::path& release_dir,
                               bool* made_ahead = nullptr) const;
    // Off the builds' way, as prepare: a copy of the kept build `key` made ahead for its
    // reuse, when `room` allows it; returns its bytes (0: there is one, or no such build).
    common::Result<std::uint64_t> prepare_build(const std::string& key, const Room& room,
                                                const std::atomic<bool>* cancel) const;
    // Drops the kept builds whose key no kept release has.
    void drop_builds_except(const std::set<std::string>& keys) const;

    std::vector<BuildCacheEntry> entries() const;
    // Everything, under the lock; returns the bytes removed.
    std::uint64_t clear() const;

  private:
    std::filesystem::path m_root;
};

// BuildCache::prepare on a thread of its own, then prepare_build of `ready_key` (the
// PRODUCTION release's build; "" none), their outcomes logged under `app`'s name.
// Destroyed: cancelled, and waited for.
class BuildCacheCopier {
  public:
    BuildCacheCopier(std::string app, BuildCache cache, std::uint64_t max, BuildCache::Room room,
                     std::string ready_key = {});
    ~BuildCacheCopier();
    BuildCacheCopier(const BuildCacheCopier&) = delete;
    BuildCacheCopier& operator=(const BuildCacheCopier&) = delete;
    // Runs at a lower CPU and I/O priority. Waits for the copy to end (`cancel`: tells it
    // to stop at its next file first; else raises its priority back where it may).
    void finish(bool cancel);

  private:
    std::atomic<bool> m_cancel{false};
    std::atomic<int> m_tid{0}; // the thread's, for its priority
    std::thread m_thread;
};

// The name of [build] cache path `path` under paths/ ('/' and '%' escaped).
std::string cache_path_name(std::string_view path);

} // namespace agent
