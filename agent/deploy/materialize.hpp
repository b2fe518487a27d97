#pragma once
// Writes a release's source tree from the blob store: files are copied (not
// hard-linked, so a build cannot corrupt the store), executables get 0755,
// symlinks are created last. Everything goes into a temporary directory
// (".tmp-ID" beside the release) that is renamed into place at the end.

#include <agent/store/blobs.hpp>
#include <common/manifest.hpp>
#include <common/result.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace agent {

// A tree materialize() wrote that nothing has used since (a release's files are its build's
// and its app's to change; this copy is nobody's): the agent keeps one per app, of the last
// tree it wrote, made while the app's worker is idle. The next tree is made from it by the
// difference of the two manifests (files that changed removed and written, the rest kept)
// instead of file by file from the store: a one-file change writes one file, not 20,000.
struct SpareTree {
    std::filesystem::path dir;
    common::Manifest manifest;
};

// What materialize() wrote: from a spare tree (written: new or changed entries; removed:
// entries of the spare the new tree has not, or has otherwise; kept: the rest), or every
// entry from the store.
struct Materialized {
    bool from_spare = false;
    std::size_t written = 0;
    std::size_t removed = 0;
    std::size_t kept = 0;
};

// Writes `manifest`'s tree at `release_dir` (replacing what is there): from `*spare` when
// given one (which is used up either way: its folder becomes the new tree, or is removed
// when that fails, and then the tree is written from the store as without one).
common::Status materialize(const common::Manifest& manifest, const BlobStore& blobs,
                           const std::filesystem::path& release_dir,
                           std::optional<SpareTree>* spare = nullptr, Materialized* done = nullptr);

// Writes a spare tree (`wanted`'s, at `dir`, from `last` when there is one) on threads of
// its own at idle CPU and I/O priority (a folder's files at a time, up to 4 threads as
// materialize() uses): it waits for the deploys, requests and apps that run meanwhile, and
// a deploy that needs the spare before it is whole cancels it instead of waiting for it
// (finish(true)).
// Where a spare tree's writer shows the files it has left to write, so that a deployment
// waiting for it lends threads (SpareWriter::finish): each thread writes the next folder's
// files. Internal to materialize.cpp.
class HelpBoard;

class SpareWriter {
  public:
    SpareWriter(common::Manifest wanted, const BlobStore& blobs, std::filesystem::path dir,
                std::optional<SpareTree> last);
    ~SpareWriter(); // cancels, and waits for the thread
    SpareWriter(const SpareWriter&) = delete;
    SpareWriter& operator=(const SpareWriter&) = delete;

    struct Outcome {
        std::optional<SpareTree> spare; // whole: written before it was cancelled
        bool cancelled = false;         // the half-written folder stays, for the next write
                                        // there (or the agent's next start) to remove
        std::string error;              // it failed otherwise
        std::size_t runs_helped = 0;    // folders' files written by threads other than the first
    };
    // Raises the threads' priority back to normal and waits for them, after telling them to
    // stop at their next file when `cancel` (else they write the rest: a deployment is
    // waiting). Once only.
    Outcome finish(bool cancel);
    // Half of its files or more are written: finishing it costs less than writing the
    // next release from the store.
    bool mostly_written() const;

  private:
    std::atomic<bool> m_cancel{false};
    std::atomic<std::size_t> m_written{0};
    std::size_t m_total = 0;
    static constexpr std::size_t k_helpers = 3; // beside the writer's thread
    std::atomic<int> m_tid{0};                  // the writer thread's, for its I/O priority
    std::array<std::atomic<int>, k_helpers> m_helper_tids{};
    std::unique_ptr<HelpBoard> m_board;
    common::Status m_status;
    std::optional<SpareTree> m_spare;
    std::thread m_thread;
    std::vector<std::thread> m_helpers; // take the writer's folders' files, as it does
};

// Where an app's spare tree is kept, beside its releases (a name that
// remove_materialize_leftovers() removes: the agent knows a spare's manifest only while
// it runs).
std::filesystem::path spare_tree_dir(const std::filesystem::path& releases_dir);

// The temporary directory materialize() uses for `release_dir`.
std::filesystem::path materialize_temp_dir(const std::filesystem::path& release_dir);
// Removes leftover temporary directories under an app's releases/ folder.
void remove_materialize_leftovers(const std::filesystem::path& releases_dir);

} // namespace agent
