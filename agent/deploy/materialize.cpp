#include <agent/deploy/file_copy.hpp>
#include <agent/deploy/io_priority.hpp>
#include <agent/deploy/materialize.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>
#include <common/parallel.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fcntl.h>
#include <functional>
#include <linux/fs.h>
#include <mutex>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::string_view k_temp_prefix = ".tmp-";

// Creates the folder of each entry once (a tree of 20,000 files has a few hundred).
class Folders {
  public:
    common::Status make(const fs::path& dir) {
        if (m_made.count(dir.native()))
            return {};
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec)
            return make_error(ErrorKind::io, "cannot create " + dir.string() + ": " +
                                                 common::os_error_text(ec.value()));
        m_made.insert(dir.native());
        return {};
    }

  private:
    std::unordered_set<std::string> m_made;
};

common::Status write_entry(const common::ManifestEntry& entry, const BlobStore& blobs,
                           const fs::path& root, CopyMemo& memo) {
    const fs::path target = root / fs::path(entry.path);
    const mode_t mode = entry.kind == common::EntryKind::executable ? 0755 : 0644;
    // A manifest's declared sizes are its blobs' (the agent checked them as it took it).
    const auto size = entry.size_declared ? std::optional(entry.size) : std::nullopt;
    if (auto copied = copy_file(blobs.path(entry.digest), target, mode, nullptr, size, &memo);
        !copied)
        return make_error(copied.error().kind, "cannot write " + entry.path + " from blob " +
                                                   entry.digest + ": " + copied.error().message);
    return {};
}

common::Status write_symlink(const common::ManifestEntry& entry, const fs::path& root) {
    fs::path link = root / fs::path(entry.path);
    std::error_code ec;
    fs::create_symlink(fs::path(entry.target), link, ec);
    if (ec)
        return make_error(ErrorKind::io, "cannot create symlink " + entry.path + ": " +
                                             common::os_error_text(ec.value()));
    return {};
}

// How a tree is written: by up to 4 threads (creating files is most of the time, and the
// file system does it in parallel across folders), or, when it can be cancelled (a spare
// tree), on the calling thread, `*cancel` checked before each file, and on the threads
// that come to `board` to help.
struct Writing {
    const std::atomic<bool>* cancel = nullptr;
    std::atomic<std::size_t>* written = nullptr; // files written so far, when counted
    HelpBoard* board = nullptr;
    bool cancelled() const { return cancel != nullptr && cancel->load(); }
};

common::Error cancelled_error() {
    return make_error(ErrorKind::failed, "cancelled");
}

// "a/b" of a manifest path "a/b/c", "" of "c".
std::string_view folder_part(std::string_view path) {
    const auto slash = path.rfind('/');
    return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

} // namespace

// The writer of a spare (at idle priority) does its folders' runs one after the other,
// taking the next each time; the threads that come to help() while it writes (the spare's
// other threads) take the next ones too.
class HelpBoard {
  public:
    using Task = std::function<common::Status(std::size_t index)>;

    // Runs task(0) ... task(count - 1) on this thread and the helpers'; the first error,
    // once every helper has left.
    common::Status write(std::size_t count, const Task& task) {
        {
            std::lock_guard lock(m_mutex);
            m_count = count;
            m_task = &task;
            m_next.store(0);
            m_failed.store(false);
            m_status = {};
            m_open = true;
        }
        m_changed.notify_all();
        auto mine = take_all();
        std::unique_lock lock(m_mutex);
        m_open = false;
        m_changed.wait(lock, [&] { return m_helpers == 0; });
        m_task = nullptr;
        if (!mine)
            return mine;
        return m_status;
    }

    // Waits for the writer to start on its files, then takes the runs left until there is
    // none (or one failed); returns at once when the writer has ended.
    void help() {
        {
            std::unique_lock lock(m_mutex);
            m_changed.wait(lock, [&] { return m_open || m_ended; });
            if (!m_open)
                return;
            ++m_helpers;
        }
        auto status = take_all(&m_helped);
        std::lock_guard lock(m_mutex);
        if (!status && m_status)
            m_status = status;
        --m_helpers;
        m_changed.notify_all();
    }

    // The writer has written all it will: helpers waiting for it leave.
    void ended() {
        {
            std::lock_guard lock(m_mutex);
            m_ended = true;
        }
        m_changed.notify_all();
    }

    // How many runs helpers wrote.
    std::size_t helped() const { return m_helped.load(); }

  private:
    common::Status take_all(std::atomic<std::size_t>* counted = nullptr) {
        while (!m_failed.load()) {
            const auto index = m_next.fetch_add(1);
            if (index >= m_count)
                break;
            if (auto done = (*m_task)(index); !done) {
                m_failed.store(true);
                return done;
            }
            if (counted != nullptr)
                counted->fetch_add(1);
        }
        return {};
    }

    std::mutex m_mutex;
    std::condition_variable m_changed;
    std::size_t m_count = 0;      // set under m_mutex before m_open
    const Task* m_task = nullptr; // likewise
    std::atomic<std::size_t> m_next{0};
    std::atomic<bool> m_failed{false};
    std::atomic<std::size_t> m_helped{0};
    bool m_open = false;  // a tree is being written: helpers may join
    bool m_ended = false; // the writer has returned
    int m_helpers = 0;
    common::Status m_status; // a helper's first error
};

namespace {

// `files` (no symlinks), a folder's files (up to 256) to one thread at a time: two threads
// creating files in one folder wait on its lock.
common::Status write_files(const std::vector<const common::ManifestEntry*>& files,
                           const BlobStore& blobs, const fs::path& root, const Writing& how) {
    const auto runs = common::runs(files.size(), 256, [&](std::size_t a, std::size_t b) {
        return folder_part(files[a]->path) == folder_part(files[b]->path);
    });
    CopyMemo memo;
    const HelpBoard::Task write_run = [&](std::size_t run) -> common::Status {
        for (auto i = runs[run].first; i < runs[run].second; ++i) {
            if (how.cancelled())
                return cancelled_error();
            TRY(write_entry(*files[i], blobs, root, memo));
            if (how.written != nullptr)
                how.written->fetch_add(1, std::memory_order_relaxed);
        }
        return {};
    };
    if (how.board != nullptr)
        return how.board->write(runs.size(), write_run);
    const auto threads = how.cancel ? 1 : common::worker_count(files.size(), 128, 4);
    return common::parallel_for(runs.size(), threads,
                                [&](std::size_t, std::size_t run) { return write_run(run); });
}

// The folders of `entries`, then their files, then their symlinks.
common::Status write_entries(const std::vector<const common::ManifestEntry*>& entries,
                             const BlobStore& blobs, const fs::path& root, const Writing& how) {
    Folders folders;
    std::vector<const common::ManifestEntry*> files;
    for (const auto* entry : entries) {
        TRY(folders.make((root / fs::path(entry->path)).parent_path()));
        if (entry->kind != common::EntryKind::symlink)
            files.push_back(entry);
    }
    TRY(write_files(files, blobs, root, how));
    for (const auto* entry : entries)
        if (entry->kind == common::EntryKind::symlink)
            TRY(write_symlink(*entry, root));
    return {};
}

// The folders the entries of `manifest` are in, below the root ("a", "a/b" for "a/b/c").
std::unordered_set<std::string> folders_of(const common::Manifest& manifest) {
    std::unordered_set<std::string> folders;
    for (const auto& entry : manifest.entries)
        for (auto slash = entry.path.find('/'); slash != std::string::npos;
             slash = entry.path.find('/', slash + 1))
            folders.insert(entry.path.substr(0, slash));
    return folders;
}

// `folders` (below `root`) 0755 whatever the agent's umask (0077), but those in `except`.
common::Status open_folders(const fs::path& root, const std::unordered_set<std::string>& folders,
                            const std::unordered_set<std::string>& except = {}) {
    for (const auto& folder : folders)
        if (!except.count(folder)) {
            const auto path = root / fs::path(folder);
            if (::chmod(path.c_str(), 0755) != 0)
                return make_error(ErrorKind::io, "cannot chmod " + path.string() + ": " +
                                                     common::os_error_text(errno));
        }
    return {};
}

// Every entry of `manifest`, from the store; folders 0755 whatever the agent's umask (0077):
// an image built from the tree keeps its modes, and its app may run as another user than
// root. Others reach none of it: apps/ is the agent's alone.
common::Status write_tree(const common::Manifest& manifest, const BlobStore& blobs,
                          const fs::path& root, const Writing& how) {
    std::vector<const common::ManifestEntry*> entries;
    entries.reserve(manifest.entries.size());
    for (const auto& entry : manifest.entries)
        entries.push_back(&entry);
    TRY(write_entries(entries, blobs, root, how));
    // The tree's folders are the manifest's, each made by write_entries (a symlink in the
    // place of one fails there).
    return open_folders(root, folders_of(manifest));
}

bool same_entry(const common::ManifestEntry& a, const common::ManifestEntry& b) {
    return a.kind == b.kind && a.digest == b.digest && a.target == b.target;
}

// Turns `root`, the tree of `from` as write_tree() wrote it, into the tree of `to`: the
// entries `to` has not, or has otherwise, removed, then the folders it has not (deepest
// first), then its new and changed entries written (new folders 0755).
common::Status apply_difference(const common::Manifest& from, const common::Manifest& to,
                                const BlobStore& blobs, const fs::path& root, Materialized& done,
                                const Writing& how) {
    std::unordered_map<std::string_view, const common::ManifestEntry*> before;
    for (const auto& entry : from.entries)
        before.emplace(entry.path, &entry);
    std::unordered_set<std::string_view> kept;
    std::vector<const common::ManifestEntry*> fresh;
    std::size_t changed = 0; // paths both trees have, otherwise
    for (const auto& entry : to.entries) {
        auto it = before.find(entry.path);
        if (it != before.end() && same_entry(*it->second, entry))
            kept.insert(entry.path);
        else
            fresh.push_back(&entry);
        changed += it != before.end() && !kept.count(entry.path);
    }
    for (const auto& entry : from.entries)
        if (!kept.count(entry.path)) {
            const auto path = root / fs::path(entry.path);
            if (::unlink(path.c_str()) != 0)
                return make_error(ErrorKind::io, "cannot remove " + path.string() + ": " +
                                                     common::os_error_text(errno));
        }
    const auto had = folders_of(from), has = folders_of(to);
    std::vector<std::string> gone;
    for (const auto& folder : had)
        if (!has.count(folder))
            gone.push_back(folder);
    std::sort(gone.begin(), gone.end(), [](const std::string& a, const std::string& b) {
        return a.size() > b.size(); // a folder's path is longer than its parent's
    });
    for (const auto& folder : gone) {
        const auto path = root / fs::path(folder);
        if (::rmdir(path.c_str()) != 0)
            return make_error(ErrorKind::io, "cannot remove " + path.string() + ": " +
                                                 common::os_error_text(errno));
    }
    TRY(write_entries(fresh, blobs, root, how));
    TRY(open_folders(root, has, had));
    done.from_spare = true;
    done.written = fresh.size();
    done.kept = kept.size();
    done.removed = from.entries.size() - kept.size() - changed;
    return {};
}

} // namespace

fs::path materialize_temp_dir(const fs::path& release_dir) {
    return release_dir.parent_path() /
           (std::string(k_temp_prefix) + release_dir.filename().string());
}

fs::path spare_tree_dir(const fs::path& releases_dir) {
    return releases_dir / (std::string(k_temp_prefix) + "spare");
}

namespace {

// materialize(), cancellable when `how` says so: then what it wrote stays (removing 20,000
// files takes as long as writing them) under its temporary name, for the next write there
// or the agent's next start to remove.
common::Status write_release(const common::Manifest& manifest, const BlobStore& blobs,
                             const fs::path& release_dir, std::optional<SpareTree>* spare,
                             Materialized* done, const Writing& how) {
    fs::path temp = materialize_temp_dir(release_dir);
    std::error_code ec;
    fs::remove_all(temp, ec);
    Materialized wrote;
    common::Status written;
    if (spare != nullptr && spare->has_value()) {
        // The spare becomes the new tree: renamed (it is nobody's), then changed.
        const auto from = std::move(**spare);
        spare->reset();
        fs::rename(from.dir, temp, ec);
        if (!ec)
            written = apply_difference(from.manifest, manifest, blobs, temp, wrote, how);
        if (how.cancelled())
            return cancelled_error();
        if (ec || !written) {
            common::log_warn("cannot make " + release_dir.string() + " from the spare tree (" +
                             (ec ? common::os_error_text(ec.value()) : written.error().message) +
                             "): writing it from the store");
            fs::remove_all(from.dir, ec);
            fs::remove_all(temp, ec);
            ec.clear();
            wrote = {};
            written = {};
        }
    }
    if (!wrote.from_spare) {
        fs::create_directories(temp, ec);
        if (ec)
            return make_error(ErrorKind::io, "cannot create " + temp.string() + ": " +
                                                 common::os_error_text(ec.value()));
        fs::permissions(temp, fs::perms(0755), ec);
        written = write_tree(manifest, blobs, temp, how);
        wrote.written = manifest.entries.size();
    }
    if (how.cancelled())
        return cancelled_error();
    if (!written) {
        fs::remove_all(temp, ec);
        return written;
    }
    fs::remove_all(release_dir, ec);
    if (!ec)
        fs::rename(temp, release_dir, ec);
    if (ec) {
        auto error = make_error(ErrorKind::io, "cannot move " + temp.string() + " into place: " +
                                                   common::os_error_text(ec.value()));
        fs::remove_all(temp, ec); // else removed at the next start
        return error;
    }
    if (auto synced = common::fsync_dir(release_dir.parent_path()); !synced)
        common::log_warn(synced.error().message);
    if (done != nullptr)
        *done = wrote;
    return {};
}

} // namespace

common::Status materialize(const common::Manifest& manifest, const BlobStore& blobs,
                           const fs::path& release_dir, std::optional<SpareTree>* spare,
                           Materialized* done) {
    return write_release(manifest, blobs, release_dir, spare, done, Writing{});
}

namespace {

// A thread's CPU and I/O priority: idle, or back to normal.
void set_priority(int tid, pthread_t thread, bool normal) {
    struct sched_param param {};
    (void)::pthread_setschedparam(thread, normal ? SCHED_OTHER : SCHED_IDLE, &param);
    set_io_priority(tid, normal ? IoClass::best_effort : IoClass::idle);
}

// The calling thread at idle priority, its id in `tid` for finish() to raise it again; back
// at normal at once when it was cancelled before (finish() found no id to raise then).
void lower_own_priority(std::atomic<int>& tid, const std::atomic<bool>& cancel) {
    const int own = static_cast<int>(::gettid());
    tid.store(own);
    set_priority(own, ::pthread_self(), false);
    if (cancel.load())
        set_priority(own, ::pthread_self(), true);
}

} // namespace

SpareWriter::SpareWriter(common::Manifest wanted, const BlobStore& blobs, fs::path dir,
                         std::optional<SpareTree> last)
    : m_total(wanted.entries.size()), m_board(std::make_unique<HelpBoard>()) {
    // Four threads for a tree of 256 files or more, as a deployment that waits for the spare
    // always had: at idle priority they cost the rest of the machine nothing more than one,
    // and a deployment that comes soon after the last finds the spare whole (one thread took
    // 1.5-3 s for 18,000 files, past a one-file change deployed at once).
    const std::size_t helpers = m_total >= 256 ? k_helpers : 0;
    m_thread = std::thread([this, wanted = std::move(wanted), &blobs, dir = std::move(dir),
                            last = std::move(last)]() mutable {
        lower_own_priority(m_tid, m_cancel);
        const auto began = std::chrono::steady_clock::now();
        const Writing how{&m_cancel, &m_written, m_board.get()};
        m_status = write_release(wanted, blobs, dir, &last, nullptr, how);
        m_board->ended();
        if (!m_status)
            return;
        common::log_info(fmt::format("spare tree {} written in {} ms ({} files)", dir.string(),
                                     std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - began)
                                         .count(),
                                     wanted.entries.size()));
        m_spare = SpareTree{dir, std::move(wanted)};
    });
    for (std::size_t i = 0; i < helpers; ++i)
        m_helpers.emplace_back([this, i] {
            lower_own_priority(m_helper_tids[i], m_cancel);
            m_board->help();
        });
}

SpareWriter::~SpareWriter() {
    (void)finish(true);
}

bool SpareWriter::mostly_written() const {
    return m_written.load(std::memory_order_relaxed) * 2 >= m_total;
}

SpareWriter::Outcome SpareWriter::finish(bool cancel) {
    if (!m_thread.joinable())
        return {};
    if (cancel)
        m_cancel.store(true);
    // Back to normal priority: at idle priority on a busy machine the threads would notice
    // the cancel, or write the last files, only when the CPU and the disk have nothing
    // else to do. (A thread that has not lowered its own yet sees the flag once it has.)
    if (const int tid = m_tid.load(); tid > 0)
        set_priority(tid, m_thread.native_handle(), true);
    for (std::size_t i = 0; i < m_helpers.size(); ++i)
        if (const int tid = m_helper_tids[i].load(); tid > 0)
            set_priority(tid, m_helpers[i].native_handle(), true);
    m_thread.join();
    for (auto& helper : m_helpers)
        helper.join();
    m_helpers.clear();
    Outcome outcome;
    outcome.cancelled = m_cancel.load() && !m_status;
    if (!m_status && !outcome.cancelled)
        outcome.error = m_status.error().message;
    outcome.spare = std::move(m_spare);
    outcome.runs_helped = m_board->helped();
    return outcome;
}

void remove_materialize_leftovers(const fs::path& releases_dir) {
    std::error_code ec;
    for (fs::directory_iterator it(releases_dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.rfind(k_temp_prefix, 0) != 0)
            continue;
        common::log_info("removing half-written release tree " + it->path().string());
        std::error_code removed;
        fs::remove_all(it->path(), removed);
        if (removed)
            common::log_warn("cannot remove " + it->path().string() + ": " + removed.message());
    }
}

} // namespace agent
