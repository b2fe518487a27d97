#include <agent/store/blobs.hpp>
#include <common/fs.hpp>
#include <common/hash.hpp>
#include <common/log.hpp>
#include <common/parallel.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/magic.h>
#include <mutex>
#include <optional>
#include <random>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;
using common::Status;

namespace {

Status check_digest(const std::string& digest) {
    if (common::is_sha256_hex(digest))
        return {};
    return make_error(ErrorKind::bad_request,
                      fmt::format("'{}' is not a sha256 digest (64 lower-case hex characters)",
                                  digest.substr(0, 80)));
}

Status create_dir(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
        return make_error(ErrorKind::io,
                          fmt::format("cannot create {}: {}", dir.string(), ec.message()));
    return {};
}

// fsync of an open file; `what` names it in the error.
Status fsync_fd(int fd, const std::string& what) {
    if (::fsync(fd) == 0)
        return {};
    const int saved = errno;
    return make_error(common::io_error_kind(saved),
                      fmt::format("cannot fsync {}: {}", what, common::os_error_text(saved)));
}

Status fsync_file(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int saved = errno;
        return make_error(
            common::io_error_kind(saved),
            fmt::format("cannot fsync {}: {}", path.string(), common::os_error_text(saved)));
    }
    auto synced = fsync_fd(fd, path.string());
    ::close(fd);
    return synced;
}

// Up to this many blobs stored at once are synced one by one; more, with one syncfs.
constexpr std::size_t k_fsync_each = 64;

void remove_quietly(const fs::path& path) {
    if (path.empty()) // a file without a name: closing it removes it
        return;
    std::error_code ec;
    fs::remove(path, ec); // best effort: a leftover temp file is harmless
}

} // namespace

BlobStore::BlobStore(fs::path root) : m_root(std::move(root)) {
    // A quarter of the descriptors the agent may open, up to 8192: two uploads of a few
    // thousand files each at once, and room for everything else.
    struct rlimit limit {};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0)
        m_unnamed_max = static_cast<int>(std::min<rlim_t>(limit.rlim_cur / 4, 8192));
}

BlobStore::TempFd::TempFd(int fd, std::shared_ptr<std::atomic<int>> open)
    : m_fd(fd), m_open(std::move(open)) {}

BlobStore::TempFd::TempFd(TempFd&& other) noexcept
    : m_fd(std::exchange(other.m_fd, -1)), m_open(std::move(other.m_open)) {}

BlobStore::TempFd& BlobStore::TempFd::operator=(TempFd&& other) noexcept {
    if (this != &other) {
        reset();
        m_fd = std::exchange(other.m_fd, -1);
        m_open = std::move(other.m_open);
    }
    return *this;
}

BlobStore::TempFd::~TempFd() {
    reset();
}

void BlobStore::TempFd::reset() {
    if (m_fd < 0)
        return;
    ::close(m_fd);
    m_fd = -1;
    if (m_open)
        m_open->fetch_sub(1, std::memory_order_relaxed);
}

std::optional<std::uint64_t> BlobStore::stored_size(std::string_view digest) const {
    if (!common::is_sha256_hex(digest))
        return std::nullopt;
    // path(digest) without its allocations: asked once per file of every tree and upload.
    thread_local std::string buffer;
    buffer.assign(m_root.native())
        .append("/")
        .append(digest.substr(0, 2))
        .append("/")
        .append(digest);
    struct stat st {};
    if (::stat(buffer.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return std::nullopt;
    return static_cast<std::uint64_t>(st.st_size);
}

bool BlobStore::has(const std::string& digest) const {
    return stored_size(digest).has_value();
}

std::vector<std::optional<std::uint64_t>>
BlobStore::stored_sizes(const std::vector<std::string_view>& digests) const {
    std::vector<std::optional<std::uint64_t>> out(digests.size());
    // Runs of 512 to each thread: a stat is a few microseconds.
    constexpr std::size_t k_run = 512;
    const auto runs = (digests.size() + k_run - 1) / k_run;
    (void)common::parallel_for(runs, common::worker_count(digests.size(), 4096, 4),
                               [&](std::size_t, std::size_t run) -> Status {
                                   const auto end = std::min(digests.size(), (run + 1) * k_run);
                                   for (auto i = run * k_run; i < end; ++i)
                                       out[i] = stored_size(digests[i]);
                                   return {};
                               });
    return out;
}

bool BlobStore::has_all(const std::vector<std::string>& digests) const {
    return std::all_of(digests.begin(), digests.end(),
                       [this](const std::string& digest) { return has(digest); });
}

fs::path BlobStore::path(const std::string& digest) const {
    return m_root / digest.substr(0, 2) / digest;
}

Status BlobStore::put(const std::string& digest, std::string_view data) {
    TRY(check_digest(digest));
    const auto actual = common::sha256_hex(data);
    if (actual != digest)
        return make_error(ErrorKind::bad_request,
                          fmt::format("content hashes to {}, not {}", actual, digest));
    if (has(digest))
        return {};
    TRY(create_dir(path(digest).parent_path()));
    return common::atomic_write_file(path(digest), data, 0600);
}

Status BlobStore::adopt(const std::string& digest, const fs::path& temp_file) {
    auto fail = [&](common::Error error) -> Status {
        remove_quietly(temp_file);
        return error;
    };
    if (auto ok = check_digest(digest); !ok)
        return fail(ok.error());
    auto actual = common::sha256_file(temp_file);
    if (!actual)
        return fail(actual.error());
    if (*actual != digest)
        return fail(make_error(ErrorKind::bad_request,
                               fmt::format("content hashes to {}, not {}", *actual, digest)));
    if (has(digest)) {
        remove_quietly(temp_file); // already stored: same content by definition
        return {};
    }
    const auto target = path(digest);
    if (auto ok = create_dir(target.parent_path()); !ok)
        return fail(ok.error());
    if (auto ok = fsync_file(temp_file); !ok)
        return fail(ok.error());
    if (::rename(temp_file.c_str(), target.c_str()) != 0) {
        const int error = errno;
        return fail(make_error(common::io_error_kind(error),
                               fmt::format("cannot rename onto {}: {}", target.string(),
                                           common::os_error_text(error))));
    }
    return common::fsync_dir(target.parent_path());
}

namespace {

// Writes all of `data` to `fd`: 0, or the errno of the failure.
int write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const auto n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return 0;
}

} // namespace

common::Result<BlobStore::Written> BlobStore::write_temp(const std::string& digest,
                                                         std::string_view data) const {
    TRY(check_digest(digest));
    Written out{digest, {}, {}};
    // A file without a name first: no entry made in blobs/tmp's folder and taken out again
    // by a rename; it is linked into place once durable.
    bool unnamed = false; // counted in m_unnamed_open
    if (makes_unnamed()) {
        unnamed = m_unnamed_open->fetch_add(1, std::memory_order_relaxed) < m_unnamed_max;
        if (!unnamed) // as many are open as may be
            m_unnamed_open->fetch_sub(1, std::memory_order_relaxed);
    }
    if (unnamed) {
        // (makes_unnamed() made blobs/tmp; should it be gone, a named file makes it again.)
        const auto dir = m_root / "tmp";
        const int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (fd >= 0) {
            out.fd = TempFd(fd, m_unnamed_open);
            if (const int error = write_all(fd, data); error != 0)
                return make_error(common::io_error_kind(error),
                                  fmt::format("cannot write a new file in {}: {}", dir.string(),
                                              common::os_error_text(error)));
            return out;
        }
        m_unnamed_open->fetch_sub(1, std::memory_order_relaxed); // a named file instead
    }
    out.temp_file = temp_path();
    const int fd = ::open(out.temp_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return make_error(common::io_error_kind(errno),
                          fmt::format("cannot create {}: {}", out.temp_file.string(),
                                      common::os_error_text(errno)));
    int error = write_all(fd, data);
    if (::close(fd) != 0 && error == 0)
        error = errno;
    if (error != 0) {
        remove_quietly(out.temp_file);
        return make_error(common::io_error_kind(error),
                          fmt::format("cannot write {}: {}", out.temp_file.string(),
                                      common::os_error_text(error)));
    }
    return out;
}

bool BlobStore::makes_unnamed() const {
    std::call_once(m_unnamed_probed, [this] {
        const auto dir = m_root / "tmp";
        std::error_code ec;
        fs::create_directories(dir, ec);
        struct statfs info {};
        if (::statfs(dir.c_str(), &info) != 0)
            return;
        switch (info.f_type) {
        case EXT4_SUPER_MAGIC:
        case XFS_SUPER_MAGIC:
        case BTRFS_SUPER_MAGIC:
        case TMPFS_MAGIC:
            break;
        default:
            return;
        }
        // One made, written, linked and unlinked: O_TMPFILE there, and a link that works for
        // this process (AT_EMPTY_PATH, or /proc/self/fd).
        const int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0)
            return;
        const auto probe = dir / fmt::format(".probe-{}-{:x}", ::getpid(), std::random_device{}());
        const bool linked = write_all(fd, "probe") == 0 && link_unnamed(fd, probe) == 0;
        ::close(fd);
        if (linked)
            ::unlink(probe.c_str());
        m_unnamed_ok.store(linked, std::memory_order_relaxed);
    });
    return m_unnamed_ok.load(std::memory_order_relaxed);
}

int BlobStore::link_unnamed(int fd, const fs::path& target) const {
    // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH on older kernels; the file's
    // /proc/self/fd link does not.
    if (m_link_empty_path.load(std::memory_order_relaxed)) {
        if (::linkat(fd, "", AT_FDCWD, target.c_str(), AT_EMPTY_PATH) == 0)
            return 0;
        if (errno != ENOENT && errno != EPERM && errno != EINVAL)
            return errno;
        m_link_empty_path.store(false, std::memory_order_relaxed);
    }
    const auto self = fmt::format("/proc/self/fd/{}", fd);
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, target.c_str(), AT_SYMLINK_FOLLOW) == 0)
        return 0;
    return errno;
}

Status BlobStore::adopt_verified(const std::vector<Written>& written) {
    auto remove_all_temps = [&] {
        for (const auto& w : written)
            remove_quietly(w.temp_file);
    };
    if (written.empty())
        return {};
    // A few: an fsync each (a syncfs would also wait for every other dirty page of the file
    // system, a release tree just copied). Many: one flush of the file system for all.
    if (written.size() <= k_fsync_each) {
        for (const auto& w : written) {
            auto synced = w.fd.get() < 0
                              ? fsync_file(w.temp_file)
                              : fsync_fd(w.fd.get(), "a new file in " + (m_root / "tmp").string());
            if (!synced) {
                remove_all_temps();
                return synced.error();
            }
        }
    } else {
        const int store_fd = ::open((m_root / "tmp").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (store_fd < 0 || ::syncfs(store_fd) != 0) {
            const int saved = errno;
            if (store_fd >= 0)
                ::close(store_fd);
            remove_all_temps();
            return make_error(common::io_error_kind(saved),
                              fmt::format("cannot sync the blob store {}: {}", m_root.string(),
                                          common::os_error_text(saved)));
        }
        ::close(store_fd);
    }
    std::set<fs::path> folders;
    bool new_folder = false;
    std::optional<common::Error> failure;
    for (const auto& w : written) {
        const bool named = w.fd.get() < 0;
        // (A file without a name is not looked for first: its link finds a blob there.)
        if (failure || (named && has(w.digest))) {
            remove_quietly(w.temp_file);
            continue;
        }
        const auto target = path(w.digest);
        if (!folders.count(target.parent_path())) {
            std::error_code ec;
            new_folder = new_folder || !fs::is_directory(target.parent_path(), ec);
            if (auto made = create_dir(target.parent_path()); !made) {
                failure = made.error();
                remove_quietly(w.temp_file);
                continue;
            }
        }
        if (!named) {
            const int error = link_unnamed(w.fd.get(), target);
            if (error != 0 && !(error == EEXIST && has(w.digest))) {
                // Named files from now on: this upload fails, the next one is stored.
                if (error != ENOSPC && error != EDQUOT)
                    m_unnamed_ok.store(false, std::memory_order_relaxed);
                failure = make_error(common::io_error_kind(error),
                                     fmt::format("cannot link a new file onto {}: {}",
                                                 target.string(), common::os_error_text(error)));
                continue;
            }
            // Synced one by one, a file is synced again once linked: btrfs, on some kernels,
            // logs nothing for a file without a name, so its fsync above kept nothing.
            if (error == 0 && written.size() <= k_fsync_each)
                if (auto synced = fsync_fd(w.fd.get(), target.string()); !synced) {
                    failure = synced.error();
                    continue;
                }
        } else if (::rename(w.temp_file.c_str(), target.c_str()) != 0) {
            const int error = errno;
            failure = make_error(common::io_error_kind(error),
                                 fmt::format("cannot rename onto {}: {}", target.string(),
                                             common::os_error_text(error)));
            remove_quietly(w.temp_file);
            continue;
        }
        folders.insert(target.parent_path());
    }
    for (const auto& folder : folders) // what was renamed stays renamed
        if (auto synced = common::fsync_dir(folder); !synced && !failure)
            failure = synced.error();
    if (new_folder) // and a new ab/ folder stays
        if (auto synced = common::fsync_dir(m_root); !synced && !failure)
            failure = synced.error();
    if (failure)
        return *failure;
    return {};
}

fs::path BlobStore::temp_path() const {
    static std::atomic<unsigned long> counter{0};
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    const auto dir = m_root / "tmp";
    std::error_code ec;
    fs::create_directories(dir, ec); // a failure shows when the caller opens the file
    return dir / fmt::format("upload-{}-{}-{:x}", ::getpid(), counter++, rng());
}

std::size_t BlobStore::remove_stale_uploads() const {
    std::error_code ec;
    std::size_t removed = 0;
    for (fs::directory_iterator it(m_root / "tmp", ec), end; !ec && it != end; it.increment(ec))
        if (fs::remove(it->path(), ec))
            ++removed;
    return removed;
}

namespace {

// The 32 bytes of a digest's 64 lowercase hex digits; nullopt for anything else.
std::optional<std::array<unsigned char, 32>> digest_bytes(std::string_view hex) {
    static constexpr auto k_nibbles = [] {
        std::array<signed char, 256> table{};
        table.fill(-1);
        for (int c = '0'; c <= '9'; ++c)
            table[static_cast<std::size_t>(c)] = static_cast<signed char>(c - '0');
        for (int c = 'a'; c <= 'f'; ++c)
            table[static_cast<std::size_t>(c)] = static_cast<signed char>(c - 'a' + 10);
        return table;
    }();
    if (hex.size() != 64)
        return std::nullopt;
    std::array<unsigned char, 32> out{};
    int bad = 0;
    for (std::size_t i = 0; i < 32; ++i) {
        const int high = k_nibbles[static_cast<unsigned char>(hex[2 * i])];
        const int low = k_nibbles[static_cast<unsigned char>(hex[2 * i + 1])];
        bad |= high | low; // -1 sets the sign bit
        out[i] = static_cast<unsigned char>(((high & 0xf) << 4) | (low & 0xf));
    }
    if (bad < 0)
        return std::nullopt;
    return out;
}

} // namespace

std::size_t BlobStore::PinKeyHash::operator()(const PinKey& key) const {
    return std::hash<std::string_view>{}(
        std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
}

void BlobStore::pin(const std::vector<std::string>& digests) {
    const auto until = std::chrono::steady_clock::now() + k_pin_time;
    std::lock_guard lock(m_pin_mutex);
    for (const auto& digest : digests)
        if (const auto key = digest_bytes(digest))
            m_pins.insert_or_assign(*key, until);
}

void BlobStore::unpin(const std::vector<std::string>& digests) {
    std::lock_guard lock(m_pin_mutex);
    for (const auto& digest : digests)
        if (const auto key = digest_bytes(digest))
            m_pins.erase(*key);
}

bool BlobStore::pinned(const std::string& digest, std::chrono::steady_clock::time_point now) const {
    const auto key = digest_bytes(digest);
    if (!key)
        return false;
    auto it = m_pins.find(*key);
    return it != m_pins.end() && now < it->second;
}

std::vector<BlobStore::Stored> BlobStore::list() const {
    std::vector<Stored> out;
    std::error_code ec;
    for (fs::directory_iterator dir(m_root, ec), end; !ec && dir != end; dir.increment(ec)) {
        const auto name = dir->path().filename().string();
        if (name.size() != 2 || !dir->is_directory(ec))
            continue; // tmp/: uploads in progress
        std::error_code inner;
        for (fs::directory_iterator it(dir->path(), inner), last; !inner && it != last;
             it.increment(inner)) {
            const auto digest = it->path().filename().string();
            if (!common::is_sha256_hex(digest) || digest.compare(0, 2, name) != 0)
                continue;
            std::error_code size_error;
            const auto bytes = it->file_size(size_error);
            out.push_back({digest, size_error ? 0 : static_cast<std::uint64_t>(bytes)});
        }
    }
    return out;
}

std::vector<BlobStore::Stored> BlobStore::collect(const std::set<std::string>& used, bool dry_run) {
    std::vector<Stored> removed;
    std::uint64_t removals = 0;
    {
        std::lock_guard lock(m_pin_mutex);
        const auto now = std::chrono::steady_clock::now();
        for (auto it = m_pins.begin(); it != m_pins.end();)
            it = now < it->second ? std::next(it) : m_pins.erase(it);
        for (auto& blob : list()) {
            if (used.count(blob.digest) || pinned(blob.digest, now))
                continue;
            std::error_code ec;
            if (!dry_run && !fs::remove(path(blob.digest), ec)) {
                if (ec)
                    common::log_warn("cannot remove blob " + blob.digest + ": " +
                                     common::os_error_text(ec.value()));
                continue;
            }
            removed.push_back(std::move(blob));
        }
        if (dry_run || removed.empty())
            return removed;
        removals = ++m_removals;
    }
    // Outside the lock: the hook takes locks of its own, and may look at every digest of a
    // few trees.
    if (m_on_removed)
        m_on_removed(removed, removals);
    return removed;
}

std::uint64_t BlobStore::removals() const {
    std::lock_guard lock(m_pin_mutex);
    return m_removals;
}

} // namespace agent
