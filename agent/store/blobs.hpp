#pragma once
// Content-addressed blob store: DATA_DIR/blobs/ab/abcdef… (sha256 of the content).
// Writes are atomic (temp file, fsync, rename), so a blob that exists is complete.

#include <common/result.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace agent {

inline constexpr std::uint64_t k_max_blob_size = 512ull * 1024 * 1024;

class BlobStore {
  public:
    explicit BlobStore(std::filesystem::path root);

    bool has(const std::string& digest) const;
    bool has_all(const std::vector<std::string>& digests) const;
    std::filesystem::path path(const std::string& digest) const;
    // The size of each digest's stored blob, nullopt where none is (or the digest is not
    // one): what a deployment's sizes are checked against, never its declared ones. A tree's
    // 20,000 files are looked at by a few threads.
    std::vector<std::optional<std::uint64_t>>
    stored_sizes(const std::vector<std::string_view>& digests) const;
    // Stores `data` if it hashes to `digest` (else ErrorKind::bad_request).
    common::Status put(const std::string& digest, std::string_view data);
    // Moves an already written temporary file into place after checking its digest.
    common::Status adopt(const std::string& digest, const std::filesystem::path& temp_file);
    // The content of one blob written and not stored yet: in a file without a name
    // (O_TMPFILE in blobs/tmp, held open by `fd`: a crash leaves nothing of it), or, where
    // the file system has no such files or thousands are open already, in a named one,
    // `temp_file` (remove_stale_uploads() clears those at the next start).
    class TempFd {
      public:
        TempFd() = default;
        TempFd(int fd, std::shared_ptr<std::atomic<int>> open);
        TempFd(TempFd&& other) noexcept;
        TempFd& operator=(TempFd&& other) noexcept;
        TempFd(const TempFd&) = delete;
        TempFd& operator=(const TempFd&) = delete;
        ~TempFd();
        int get() const { return m_fd; }

      private:
        void reset();
        int m_fd = -1;
        std::shared_ptr<std::atomic<int>> m_open; // the store's count of them
    };
    struct Written {
        std::string digest;
        std::filesystem::path temp_file; // empty when `fd` holds the content
        TempFd fd;
    };
    // Stores many blobs at once (a streamed upload, a release's tree nodes): each
    // temporary file already holds content that hashes to its digest. Their data is
    // made durable (up to 64 an fsync each, more with one syncfs() of the store's file
    // system), then each is linked (a file without a name) or renamed (a named one) into
    // place and the folders are synced: a crash leaves each blob whole or absent.
    // The named temporary files are gone afterwards, stored or not; a file without a name
    // goes when the Written holding it does.
    common::Status adopt_verified(const std::vector<Written>& written);
    // Writes `data` (already hashed to `digest` by the caller) to a fresh temporary file.
    common::Result<Written> write_temp(const std::string& digest, std::string_view data) const;
    // At most `max` files without a name open at once (0: named temporary files only); by
    // default a quarter of the descriptors the process may open, up to 8192.
    void limit_unnamed(int max) { m_unnamed_max = max; }
    // Whether uploads use files without a name here: the file system is one known to keep
    // them whole through a link (ext4, xfs, btrfs, tmpfs; not ZFS, whose link of one waits
    // for a whole pool sync, nor NFS or overlayfs), and a first one made and linked in
    // blobs/tmp worked. Decided at the first write_temp().
    bool makes_unnamed() const;
    // For tests: link as a process without CAP_DAC_READ_SEARCH does (through /proc).
    void link_through_proc() { m_link_empty_path = false; }
    // A fresh temporary path inside the store's directory (same file system).
    std::filesystem::path temp_path() const;
    // Removes uploads left half-written by an agent that was killed; call it at
    // startup, before any upload can begin. Returns how many were removed.
    std::size_t remove_stale_uploads() const;

    // --- collection (docs/design.md §4, "Disk") ---
    // Blobs a deploy in progress is about to use (asked about by
    // POST /v1/blobs/missing, uploaded, or named by a deployment being
    // recorded): a collection leaves them alone until unpin() or for
    // k_pin_time, whichever comes first (a client that went away).
    static constexpr std::chrono::minutes k_pin_time{60};
    void pin(const std::vector<std::string>& digests);
    void unpin(const std::vector<std::string>& digests);
    struct Stored {
        std::string digest;
        std::uint64_t bytes = 0;
    };
    std::vector<Stored> list() const;
    // Removes (or with dry_run only lists) every stored blob that is not in
    // `used` and not pinned; the pins are checked and the files removed under
    // one lock, so a blob pinned meanwhile stays. Returns what went.
    std::vector<Stored> collect(const std::set<std::string>& used, bool dry_run);
    // How many collections have removed a blob so far. A set of blobs all present when
    // it was N is still all present while it stays N (a collection is the only thing that
    // removes blobs); read it after pinning them, so that none can go unnoticed.
    std::uint64_t removals() const;
    // Told what each collection removed and the removals() count it made, once the
    // collection is over (so a set known to be whole at the count before, none of whose
    // digests went, is whole at the new count too). Set before the store is shared.
    using RemovedHook =
        std::function<void(const std::vector<Stored>& removed, std::uint64_t removals)>;
    void on_removed(RemovedHook hook) { m_on_removed = std::move(hook); }

  private:
    std::optional<std::uint64_t> stored_size(std::string_view digest) const;
    // A pinned digest as its 32 bytes: a tree of 18,000 files is pinned without a string
    // each (a string that is not a digest names no blob and is not pinned).
    using PinKey = std::array<unsigned char, 32>;
    struct PinKeyHash {
        std::size_t operator()(const PinKey& key) const;
    };
    bool pinned(const std::string& digest, std::chrono::steady_clock::time_point now) const;

    // Links a file without a name into place; EEXIST when a blob is there already.
    int link_unnamed(int fd, const std::filesystem::path& target) const;

    std::filesystem::path m_root;
    // Files without a name held open (write_temp), at most m_unnamed_max of them: each is a
    // descriptor until its upload is stored.
    std::shared_ptr<std::atomic<int>> m_unnamed_open = std::make_shared<std::atomic<int>>(0);
    int m_unnamed_max = 0;
    mutable std::once_flag m_unnamed_probed;
    mutable std::atomic<bool> m_unnamed_ok{false};     // makes_unnamed(), once probed
    mutable std::atomic<bool> m_link_empty_path{true}; // linkat(AT_EMPTY_PATH) is allowed
    mutable std::mutex m_pin_mutex;
    std::unordered_map<PinKey, std::chrono::steady_clock::time_point, PinKeyHash>
        m_pins;                   // digest -> until
    std::uint64_t m_removals = 0; // under m_pin_mutex
    RemovedHook m_on_removed;
};

} // namespace agent
