#include <agent/deploy/build_cache.hpp>
#include <agent/deploy/file_copy.hpp>
#include <agent/deploy/io_priority.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/hash.hpp>
#include <common/log.hpp>
#include <common/number.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <iterator>
#include <map>
#include <optional>
#include <stdio.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

// The bytes of the regular files under `path`, each inode once, and the newest
// modification time of anything under it (itself included).
struct Measure {
    std::uint64_t bytes = 0;
    std::uint64_t files = 0; // names of anything, itself included
    std::int64_t newest = 0; // nanoseconds
};

std::int64_t to_nanos(const struct timespec& t) {
    return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

Measure measure(const fs::path& path) {
    Measure out;
    LinkedOnce once;
    auto visit = [&](const fs::path& p) {
        struct stat st {};
        if (::lstat(p.c_str(), &st) != 0)
            return;
        ++out.files;
        out.newest = std::max(out.newest, to_nanos(st.st_mtim));
        if (S_ISREG(st.st_mode) && once.first(st))
            out.bytes += static_cast<std::uint64_t>(st.st_size);
    };
    visit(path);
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        visit(it->path());
    return out;
}

void remove_quietly(const fs::path& path) {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec)
        common::log_warn("cannot remove " + path.string() + ": " + ec.message());
}

// Removes `path` off the build's way: renamed into the cache's .trash/ at once, deleted by a
// thread of its own (what it had not deleted when the agent stopped goes with the next build).
void remove_later(const fs::path& path, const fs::path& root) {
    static std::atomic<unsigned> serial{0};
    std::error_code ec;
    fs::create_directories(root / ".trash", ec);
    const auto trash = root / ".trash" / fmt::format("{}-{}", ::getpid(), serial.fetch_add(1) + 1);
    if (::rename(path.c_str(), trash.c_str()) != 0) {
        remove_quietly(path);
        return;
    }
    std::thread([trash] { // nothing logged: it may outlive the agent's logger at exit
        std::error_code ignored;
        fs::remove_all(trash, ignored);
    })
        .detach();
}

// Milliseconds since `since`, for the notes.
long long ms_since(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 since)
        .count();
}

// Replaces `target` with `fresh` in one step: renameat2's exchange where the file
// system has it, else two renames (a crash between them leaves no `target`: the next
// build starts without that entry, never with a half of one).
common::Status swap_in(const fs::path& fresh, const fs::path& target, const fs::path& root) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(target, ec))) {
        if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
            remove_later(fresh, root); // now the old one
            return {};
        }
        const auto old = target.parent_path() / (".old-" + target.filename().string());
        remove_quietly(old);
        if (::rename(target.c_str(), old.c_str()) != 0)
            return make_error(common::io_error_kind(errno), "cannot replace " + target.string() +
                                                                ": " +
                                                                common::os_error_text(errno));
        remove_quietly(old);
    }
    if (::rename(fresh.c_str(), target.c_str()) != 0)
        return make_error(common::io_error_kind(errno),
                          "cannot save " + target.string() + ": " + common::os_error_text(errno));
    return {};
}

std::string size_text(std::uint64_t bytes) {
    return common::format_bytes(bytes);
}

// The first component of `path` under `root` but its last that is a symbolic link: a cache
// path is never restored through one out of the release directory.
std::optional<std::string> symlink_on_the_way(const fs::path& root, const std::string& path) {
    fs::path at = root;
    std::string prefix;
    const fs::path relative(path);
    std::size_t count = std::distance(relative.begin(), relative.end());
    std::size_t index = 0;
    for (const auto& part : relative) {
        ++index;
        at /= part;
        prefix += (prefix.empty() ? "" : "/") + part.string();
        if (index == count)
            break;
        struct stat st {};
        if (::lstat(at.c_str(), &st) != 0)
            break; // the rest does not exist yet: made as folders
        if (S_ISLNK(st.st_mode))
            return prefix;
    }
    return std::nullopt;
}

// The same in a snapshot of the release (`path` itself included).
std::optional<std::string> symlink_on_the_way(const TreeSnapshot& release,
                                              const std::string& path) {
    fs::path at;
    for (const auto& part : fs::path(path)) {
        at /= part;
        const auto* entry = entry_at(release, at);
        if (entry == nullptr)
            break;
        if (S_ISLNK(entry->st.st_mode))
            return at.string();
    }
    return std::nullopt;
}

// When a saved path was last restored or saved: the time of PATH.used beside it (never
// the path's own times, which tools compare: npm trusts node_modules/.package-lock.json
// only when no folder under node_modules is newer).
fs::path used_marker(const fs::path& saved) {
    return saved.parent_path() / (saved.filename().string() + ".used");
}

void mark_used(const fs::path& saved) {
    const auto marker = used_marker(saved);
    const int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ::futimens(fd, nullptr);
        ::close(fd);
    }
}

// This agent process's mark on the ready copies (next/) it makes: one another process made
// (an agent that stopped, or crashed with some of its unsynced writes lost) is never used.
const std::string& process_mark() {
    static const std::string mark = [] {
        auto hex = common::random_hex(16);
        return hex ? *hex
                   : fmt::format("{}-{}", ::getpid(),
                                 std::chrono::steady_clock::now().time_since_epoch().count());
    }();
    return mark;
}

// The cache's version: written anew by each change of paths/ or dir/.
std::string read_version(const fs::path& root) {
    auto text = common::read_file(root / "version");
    return text ? *text : std::string("0");
}

// paths/ or dir/ are about to change (under the lock): a copy being made ahead is not to
// be used.
void new_version(const fs::path& root) {
    static std::atomic<unsigned> serial{0};
    const auto version = fmt::format("{}-{}", process_mark(), serial.fetch_add(1) + 1);
    if (auto written = common::write_unsynced(root / "version", version, false); !written)
        remove_quietly(root / "version"); // a missing one is "0": still not the copy's
}

// The same, and the copy made ahead is stale from now on.
void changing(const fs::path& root) {
    new_version(root);
    std::error_code ec;
    if (fs::exists(fs::symlink_status(root / "next", ec)))
        remove_later(root / "next", root);
}

// next/ was made by this process from the cache as it is now.
bool ready_copy_current(const fs::path& root) {
    auto made = common::read_file(root / "next" / "made");
    return made && *made == process_mark() + "\n" + read_version(root);
}

// builds/.ready-KEY: a copy of the kept build KEY made ahead (prepare_build), which a reuse
// renames into its release directory; .ready-KEY.made names the process that made it (it
// is written unsynced: one a crash interrupted is never used).
fs::path ready_build(const fs::path& root, const std::string& key) {
    return root / "builds" / (".ready-" + key);
}
fs::path ready_build_mark(const fs::path& root, const std::string& key) {
    return root / "builds" / (".ready-" + key + ".made");
}
bool ready_build_current(const fs::path& root, const std::string& key) {
    auto made = common::read_file(ready_build_mark(root, key));
    std::error_code ec;
    return made && *made == process_mark() + "\n" && fs::is_directory(ready_build(root, key), ec);
}
// The key a name under builds/ belongs to: KEY, KEY.release, .ready-KEY, .ready-KEY.made,
// .ready-tmp-KEY ("" for another name, .new-KEY included).
std::string build_key_of(std::string name) {
    for (const char* suffix : {".release", ".made"})
        if (name.ends_with(suffix))
            name.resize(name.size() - std::strlen(suffix));
    for (const char* prefix : {".ready-tmp-", ".ready-"})
        if (name.starts_with(prefix))
            return name.substr(std::strlen(prefix));
    return name.starts_with(".") ? "" : name;
}

// The cache's entries: each saved path, each top-level folder of $CACHE_DIR and, `builds`,
// each kept build (a whole release tree to walk, so only when asked for).
std::vector<BuildCacheEntry> list_entries(const fs::path& root, bool builds) {
    std::vector<BuildCacheEntry> out;
    std::error_code ec;
    auto add = [&](const fs::path& dir, const std::string& kind, auto&& name_of) {
        for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
             it.increment(ec)) {
            const auto file = it->path().filename().string();
            if (file.starts_with(".new-") || file.starts_with(".old-") || file.ends_with(".used"))
                continue;
            if (kind == "build" && (!it->is_directory() || file.starts_with(".ready-")))
                continue;
            BuildCacheEntry entry;
            entry.name = name_of(file);
            entry.kind = kind;
            const auto m = measure(it->path());
            entry.bytes = m.bytes;
            entry.last_used = m.newest;
            if (kind == "path") {
                struct stat st {};
                if (::stat(used_marker(it->path()).c_str(), &st) == 0)
                    entry.last_used = std::max(entry.last_used, to_nanos(st.st_mtim));
            }
            if (kind == "build") {
                std::string release;
                if (auto text = common::read_file(dir / (file + ".release")))
                    release = *text;
                while (!release.empty() && (release.back() == '\n' || release.back() == '\r'))
                    release.pop_back();
                entry.release = release;
            }
            out.push_back(std::move(entry));
        }
        ec.clear();
    };
    add(root / "paths", "path", [](const std::string& file) {
        std::string name;
        for (std::size_t i = 0; i < file.size(); ++i) {
            if (file[i] == '%' && file.compare(i, 3, "%2F") == 0) {
                name += '/';
                i += 2;
            } else if (file[i] == '%' && file.compare(i, 3, "%25") == 0) {
                name += '%';
                i += 2;
            } else {
                name += file[i];
            }
        }
        return name;
    });
    add(root / "dir", "dir", [](const std::string& file) { return file; });
    if (builds) {
        add(root / "builds", "build", [](const std::string& file) { return file; });
        if (fs::is_directory(root / "next", ec)) {
            const auto m = measure(root / "next");
            out.push_back({"next build", "ready", m.bytes, m.newest, ""});
        }
        ec.clear();
        // The copies of kept builds made ahead for their reuse, under their build's key.
        for (std::size_t i = 0, builds_end = out.size(); i < builds_end; ++i)
            if (out[i].kind == "build" && fs::is_directory(ready_build(root, out[i].name), ec)) {
                const auto m = measure(ready_build(root, out[i].name));
                out.push_back({out[i].name, "ready", m.bytes, m.newest, out[i].release});
            }
    }
    return out;
}

// Drops the least recently used of `cached` (paths and $CACHE_DIR folders) until the rest
// is at most `max` bytes; `cached` keeps the rest, the dropped ones are returned.
std::vector<BuildCacheEntry> drop_lru(const fs::path& root, std::vector<BuildCacheEntry>& cached,
                                      std::uint64_t max) {
    std::uint64_t total = 0;
    for (const auto& entry : cached)
        total += entry.bytes;
    std::sort(cached.begin(), cached.end(), [](const auto& a, const auto& b) {
        return a.last_used != b.last_used ? a.last_used < b.last_used : a.bytes > b.bytes;
    });
    std::vector<BuildCacheEntry> dropped;
    auto it = cached.begin();
    if (total > max)
        changing(root);
    for (; it != cached.end() && total > max; ++it) {
        if (it->kind == "path") {
            remove_quietly(root / "paths" / cache_path_name(it->name));
            remove_quietly(used_marker(root / "paths" / cache_path_name(it->name)));
        } else {
            remove_quietly(root / "dir" / it->name);
        }
        total -= std::min(total, it->bytes);
        dropped.push_back(std::move(*it));
    }
    cached.erase(cached.begin(), it);
    return dropped;
}

} // namespace

BuildCacheLock& BuildCacheLock::operator=(BuildCacheLock&& other) noexcept {
    if (this != &other) {
        if (m_fd >= 0)
            ::close(m_fd);
        m_fd = other.m_fd;
        other.m_fd = -1;
    }
    return *this;
}

BuildCacheLock::~BuildCacheLock() {
    if (m_fd >= 0)
        ::close(m_fd); // releases the flock
}

std::string cache_path_name(std::string_view path) {
    std::string out;
    for (char c : path) {
        if (c == '/')
            out += "%2F";
        else if (c == '%')
            out += "%25";
        else
            out += c;
    }
    return out;
}

namespace {
// Each (from, to) of `copies` at once, as copy_tree, with the bytes of each copy (copy_tree's
// `bytes`); the first error.
common::Status copy_trees(const std::vector<std::pair<fs::path, fs::path>>& copies, bool links,
                          std::vector<std::uint64_t>& bytes,
                          const std::atomic<bool>* cancel = nullptr) {
    std::vector<common::Status> results(copies.size());
    bytes.assign(copies.size(), 0);
    auto copy = [&](std::size_t i) {
        results[i] = copy_tree(copies[i].first, copies[i].second, links, &bytes[i], cancel);
    };
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < copies.size(); ++i)
        threads.emplace_back(copy, i);
    if (!copies.empty())
        copy(0);
    for (auto& thread : threads)
        thread.join();
    for (auto& result : results)
        if (!result)
            return result;
    return {};
}
} // namespace

common::Result<BuildCacheLock> BuildCache::lock(bool wait) const {
    std::error_code ec;
    fs::create_directories(m_root, ec);
    if (ec)
        return make_error(ErrorKind::io, "cannot create " + m_root.string() + ": " + ec.message());
    // Its trees keep the modes their builds gave them (as release trees do), so the folder
    // that holds them is the agent's alone.
    fs::permissions(m_root, fs::perms::owner_all, fs::perm_options::replace, ec);
    const auto path = m_root / "lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return make_error(common::io_error_kind(errno),
                          "cannot open " + path.string() + ": " + common::os_error_text(errno));
    for (;;) {
        if (::flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) == 0)
            return BuildCacheLock(fd);
        if (errno == EINTR)
            continue;
        const int error = errno;
        ::close(fd);
        if (error == EWOULDBLOCK)
            return make_error(ErrorKind::refused,
                              "a build of the app is using its build cache; try again once it "
                              "is done");
        return make_error(common::io_error_kind(error),
                          "cannot lock " + path.string() + ": " + common::os_error_text(error));
    }
}

common::Status BuildCache::restore(const fs::path& release_dir,
                                   const std::vector<std::string>& paths, bool fresh,
                                   const Note& note) const {
    const auto began = std::chrono::steady_clock::now();
    remove_quietly(build_dir()); // what an interrupted build left
    // and what an agent that stopped had not deleted yet (this one's threads delete its own)
    const auto mine = std::to_string(::getpid()) + "-";
    std::error_code ec;
    for (auto it = fs::directory_iterator(m_root / ".trash", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec))
        if (!it->path().filename().string().starts_with(mine))
            remove_quietly(it->path());
    ec.clear();
    const auto dir = m_root / "dir";
    const auto next = m_root / "next";
    // A part of the copy made ahead (prepare) is renamed into place: no file copied.
    const bool ready = !fresh && ready_copy_current(m_root);
    std::vector<std::string> ahead; // the parts taken from it
    auto take_ready = [&](const fs::path& part, const fs::path& target) {
        return ready && fs::exists(fs::symlink_status(part, ec)) &&
               ::rename(part.c_str(), target.c_str()) == 0;
    };
    // The copies run at once, a cp each: on a file system without reflinks each one is a
    // walk of many small files, bound by system calls more than by the disk.
    std::vector<std::pair<fs::path, fs::path>> copies;
    if (!fresh && fs::is_directory(dir, ec)) {
        if (take_ready(next / "dir", build_dir()))
            ahead.push_back("$CACHE_DIR");
        else
            copies.emplace_back(dir, build_dir());
    } else {
        fs::create_directories(build_dir(), ec);
        if (ec)
            return make_error(ErrorKind::io,
                              "cannot create " + build_dir().string() + ": " + ec.message());
    }
    if (fresh) {
        note("build cache not used (--no-cache): the build starts from an empty $CACHE_DIR");
        return {};
    }
    std::vector<std::string> restored; // [build] cache paths copied, copies[first_path] on
    std::vector<std::pair<std::string, std::uint64_t>> moved; // those taken from next/
    const auto first_path = copies.size();
    std::vector<fs::path> used;
    for (const auto& path : paths) {
        const auto saved = m_root / "paths" / cache_path_name(path);
        const auto target = release_dir / path;
        if (!fs::exists(fs::symlink_status(saved, ec)))
            continue;
        if (fs::exists(fs::symlink_status(target, ec))) {
            note("build cache: " + path +
                 " is in the uploaded tree, so the cached one is not "
                 "restored");
            continue;
        }
        if (auto link = symlink_on_the_way(release_dir, path)) {
            note("build cache: " + path + " not restored: " + *link +
                 " is a symbolic link, and the cache is only copied inside the release");
            continue;
        }
        fs::create_directories(target.parent_path(), ec);
        used.push_back(saved);
        const auto part = next / "paths" / cache_path_name(path);
        if (take_ready(part, target)) {
            std::uint64_t size = 0;
            if (auto text = common::read_file(part.string() + ".bytes"))
                size = common::parse_whole_number<std::uint64_t>(*text).value_or(0);
            moved.emplace_back(path, size);
            ahead.push_back(path);
            continue;
        }
        copies.emplace_back(saved, target);
        restored.push_back(path);
    }
    if (!fresh) // what this build did not take of the copy made ahead, or a stale one
        remove_later(next, m_root);
    std::vector<std::uint64_t> bytes;
    TRY(copy_trees(copies, false, bytes));
    for (const auto& saved : used)
        mark_used(saved);
    if (!restored.empty() || !moved.empty()) {
        std::string list;
        for (const auto& [path, size] : moved)
            list += (list.empty() ? "" : ", ") + path + " (" + size_text(size) + ")";
        for (std::size_t i = 0; i < restored.size(); ++i)
            list += (list.empty() ? "" : ", ") + restored[i] + " (" +
                    size_text(bytes[first_path + i]) + ")";
        std::string from;
        for (const auto& part : ahead)
            from += (from.empty() ? "" : ", ") + part;
        note(fmt::format("build cache: restored {} in {} ms{}", list, ms_since(began),
                         from.empty() ? "" : " (" + from + ": the copy made ahead of this build)"));
    }
    return {};
}

common::Status BuildCache::save(const fs::path& release_dir, const std::vector<std::string>& paths,
                                std::uint64_t max, const Note& note) const {
    TRY_ASSIGN(auto release, snapshot_tree(release_dir));
    return save(release, paths, max, note);
}

common::Status BuildCache::save(const TreeSnapshot& release, const std::vector<std::string>& paths,
                                std::uint64_t max, const Note& note) const {
    const auto began = std::chrono::steady_clock::now();
    changing(m_root);
    std::error_code ec;
    fs::create_directories(m_root / "paths", ec);
    std::vector<std::string> saved;
    for (const auto& path : paths) {
        const auto target = m_root / "paths" / cache_path_name(path);
        if (auto link = symlink_on_the_way(release, path)) {
            note("build cache: " + path + " not saved: " + *link +
                 " is a symbolic link, and the cache only keeps what is inside the release");
            continue;
        }
        auto source = subtree(release, path);
        if (!source) {
            note("build cache: the build left no " + path + " to keep");
            continue;
        }
        const auto fresh = m_root / "paths" / (".new-" + cache_path_name(path));
        remove_quietly(fresh);
        TRY(copy_snapshot(*source, fresh, true));
        TRY(swap_in(fresh, target, m_root));
        mark_used(target);
        saved.push_back(path);
    }
    if (fs::is_directory(build_dir(), ec)) {
        TRY(swap_in(build_dir(), m_root / "dir", m_root));
        saved.push_back("$CACHE_DIR");
    }
    // Paths no longer listed in [build] cache go: nothing restores them.
    std::set<std::string> listed;
    for (const auto& path : paths) {
        listed.insert(cache_path_name(path));
        listed.insert(cache_path_name(path) + ".used");
    }
    for (auto it = fs::directory_iterator(m_root / "paths", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec))
        if (!listed.count(it->path().filename().string()))
            remove_quietly(it->path());
    auto cached = list_entries(m_root, false);
    const auto dropped = drop_lru(m_root, cached, max);
    std::uint64_t total = 0;
    for (const auto& entry : cached)
        total += entry.bytes;
    std::string list;
    for (const auto& item : saved)
        list += (list.empty() ? "" : ", ") + item;
    note(fmt::format("build cache saved: {} ({} in all, at most {}) in {} ms", list,
                     size_text(total), common::format_size(max), ms_since(began)));
    for (const auto& entry : dropped)
        note("build cache: dropped " + entry.name + " (" + size_text(entry.bytes) +
             "), the least recently used, to stay within [build] cache_max");
    return {};
}

void BuildCache::discard() const {
    remove_quietly(build_dir());
}

common::Result<std::uint64_t> BuildCache::prepare(std::uint64_t max, const Room& room,
                                                  const std::atomic<bool>* cancel) const {
    const auto version = read_version(m_root);
    const auto temp = m_root / ".next-tmp";
    const auto next = m_root / "next";
    remove_quietly(temp);
    std::error_code ec;
    if (ready_copy_current(m_root))
        return std::uint64_t{0}; // made already, and the cache has not changed since
    std::vector<std::pair<fs::path, fs::path>> copies;
    if (fs::is_directory(m_root / "dir", ec))
        copies.emplace_back(m_root / "dir", temp / "dir");
    const auto first_path = copies.size();
    for (auto it = fs::directory_iterator(m_root / "paths", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const auto file = it->path().filename().string();
        if (!file.starts_with(".new-") && !file.starts_with(".old-") && !file.ends_with(".used"))
            copies.emplace_back(it->path(), temp / "paths" / file);
    }
    if (copies.empty())
        return std::uint64_t{0};
    Measure all;
    for (const auto& copy : copies) {
        const auto m = measure(copy.first);
        all.bytes += m.bytes;
        all.files += m.files;
    }
    if (all.bytes == 0)
        return std::uint64_t{0}; // empty folders: restored at once as they are
    if (all.bytes > max / 2)
        return make_error(ErrorKind::refused,
                          fmt::format("the cache ({}) and a copy of it would take more than "
                                      "[build] cache_max ({})",
                                      size_text(all.bytes), size_text(max)));
    TRY(room(all.bytes, all.files));
    fs::create_directories(temp / "paths", ec);
    if (ec)
        return make_error(ErrorKind::io, "cannot create " + temp.string() + ": " + ec.message());
    std::vector<std::uint64_t> bytes;
    auto copied = copy_trees(copies, false, bytes, cancel);
    for (std::size_t i = first_path; copied && i < copies.size(); ++i)
        copied = common::write_unsynced(copies[i].second.string() + ".bytes",
                                        std::to_string(bytes[i]), false);
    if (copied)
        copied = common::write_unsynced(temp / "made", process_mark() + "\n" + version, false);
    if (!copied) {
        if (cancel == nullptr || !cancel->load()) // cancelled: the next prepare removes it
            remove_quietly(temp);
        return copied.error();
    }
    // In place only if no build or clear changed the cache while it was copied.
    TRY_ASSIGN(auto held, lock(true));
    if (read_version(m_root) != version) {
        remove_quietly(temp);
        return make_error(ErrorKind::refused, "the cache changed while it was copied");
    }
    remove_quietly(next);
    if (::rename(temp.c_str(), next.c_str()) != 0) {
        const int error = errno;
        remove_quietly(temp);
        return make_error(common::io_error_kind(error),
                          "cannot rename " + temp.string() + ": " + common::os_error_text(error));
    }
    std::uint64_t total = 0;
    for (auto size : bytes)
        total += size;
    return total;
}

std::vector<BuildCacheEntry> BuildCache::bound(std::uint64_t max) const {
    auto cached = list_entries(m_root, false);
    return drop_lru(m_root, cached, max);
}

common::Status BuildCache::keep_build(const fs::path& release_dir, const std::string& key,
                                      const std::string& release) const {
    TRY_ASSIGN(auto tree, snapshot_tree(release_dir));
    return keep_build(tree, key, release);
}

common::Status BuildCache::keep_build(const TreeSnapshot& tree, const std::string& key,
                                      const std::string& release) const {
    std::error_code ec;
    const auto builds = m_root / "builds";
    fs::create_directories(builds, ec);
    const auto target = builds / key;
    if (fs::exists(target, ec))
        return {};
    const auto fresh = builds / (".new-" + key);
    remove_quietly(fresh);
    TRY(copy_snapshot(tree, fresh, true));
    TRY(common::atomic_write_file(builds / (key + ".release"), release + "\n"));
    return swap_in(fresh, target, m_root);
}

bool BuildCache::has_build(const std::string& key) const {
    std::error_code ec;
    return !key.empty() && fs::is_directory(m_root / "builds" / key, ec);
}

common::Status BuildCache::reuse_build(const std::string& key, const fs::path& release_dir,
                                       bool* made_ahead) const {
    std::error_code ec;
    fs::remove_all(release_dir, ec);
    fs::create_directories(release_dir.parent_path(), ec);
    if (made_ahead)
        *made_ahead = false;
    if (ready_build_current(m_root, key) &&
        ::rename(ready_build(m_root, key).c_str(), release_dir.c_str()) == 0) {
        remove_quietly(ready_build_mark(m_root, key));
        if (made_ahead)
            *made_ahead = true;
        return {};
    }
    return copy_tree(m_root / "builds" / key, release_dir, false);
}

common::Result<std::uint64_t> BuildCache::prepare_build(const std::string& key, const Room& room,
                                                        const std::atomic<bool>* cancel) const {
    if (!has_build(key) || ready_build_current(m_root, key))
        return std::uint64_t{0};
    // One copy made ahead per app: another build's goes (it is no longer the one serving),
    // and so does any of this one's (half-made, or another process's).
    std::error_code ec;
    for (auto it = fs::directory_iterator(m_root / "builds", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec))
        if (it->path().filename().string().starts_with(".ready-"))
            remove_quietly(it->path());
    const auto kept = m_root / "builds" / key;
    const auto temp = m_root / "builds" / (".ready-tmp-" + key);
    const auto m = measure(kept);
    TRY(room(m.bytes, m.files));
    std::uint64_t bytes = 0;
    if (auto copied = copy_tree(kept, temp, false, &bytes, cancel); !copied) {
        if (cancel == nullptr || !cancel->load()) // cancelled: the next prepare removes it
            remove_quietly(temp);
        return copied.error();
    }
    // In place only while the build is kept (a prune may have dropped it meanwhile).
    TRY_ASSIGN(auto held, lock(true));
    if (!has_build(key)) {
        remove_quietly(temp);
        return make_error(ErrorKind::refused, "the build was dropped while it was copied");
    }
    if (::rename(temp.c_str(), ready_build(m_root, key).c_str()) != 0) {
        const int error = errno;
        remove_quietly(temp);
        return make_error(common::io_error_kind(error),
                          "cannot rename " + temp.string() + ": " + common::os_error_text(error));
    }
    TRY(common::write_unsynced(ready_build_mark(m_root, key), process_mark() + "\n", false));
    return bytes;
}

void BuildCache::drop_builds_except(const std::set<std::string>& keys) const {
    std::error_code ec;
    for (auto it = fs::directory_iterator(m_root / "builds", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const auto key = build_key_of(it->path().filename().string());
        if (key.empty() || !keys.count(key))
            remove_quietly(it->path());
    }
}

std::vector<BuildCacheEntry> BuildCache::entries() const {
    return list_entries(m_root, true);
}

std::uint64_t BuildCache::clear() const {
    std::uint64_t bytes = 0;
    for (const auto& entry : entries())
        bytes += entry.bytes;
    new_version(m_root); // a copy being made ahead is not used either
    for (const char* part : {"dir", "paths", "builds", "build", "next", ".trash"})
        remove_quietly(m_root / part);
    return bytes;
}

namespace {
constexpr int k_copier_nice = 10;
constexpr int k_io_lowest = 7; // of the best-effort class
} // namespace

BuildCacheCopier::BuildCacheCopier(std::string app, BuildCache cache, std::uint64_t max,
                                   BuildCache::Room room, std::string ready_key) {
    m_thread = std::thread([this, app = std::move(app), cache = std::move(cache), max,
                            room = std::move(room), ready_key = std::move(ready_key)] {
        // Below the deploys and the apps, on the CPUs and the disk (the threads it starts
        // too): it is done ahead of time. A nice value and the lowest best-effort I/O
        // level, not the idle classes: a build that waits for it must not wait for ever
        // on a busy server.
        const int tid = static_cast<int>(::gettid());
        m_tid.store(tid);
        (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), k_copier_nice);
        set_io_priority(tid, IoClass::best_effort, k_io_lowest);
        const auto began = std::chrono::steady_clock::now();
        auto made = cache.prepare(max, room, &m_cancel);
        if (made && *made > 0)
            common::log_info(fmt::format("{}: build cache copied ahead of the next build "
                                         "({}) in {} ms",
                                         app, size_text(*made), ms_since(began)));
        else if (!made && !m_cancel.load())
            common::log_info(app +
                             ": no copy of the build cache made ahead of the next "
                             "build: " +
                             made.error().message);
        if (ready_key.empty() || m_cancel.load())
            return;
        const auto then = std::chrono::steady_clock::now();
        auto ready = cache.prepare_build(ready_key, room, &m_cancel);
        if (ready && *ready > 0)
            common::log_info(fmt::format("{}: build {} copied ahead of its reuse ({}) in {} ms",
                                         app, ready_key.substr(0, 12), size_text(*ready),
                                         ms_since(then)));
        else if (!ready && !m_cancel.load())
            common::log_info(fmt::format("{}: no copy of build {} made ahead of its reuse: {}", app,
                                         ready_key.substr(0, 12), ready.error().message));
    });
}

BuildCacheCopier::~BuildCacheCopier() {
    finish(true);
}

void BuildCacheCopier::finish(bool cancel) {
    if (cancel)
        m_cancel.store(true);
    else if (const int tid = m_tid.load(); tid > 0) { // waited for: at the waiter's priority
        (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 0); // (root only)
        set_io_priority(tid, IoClass::best_effort);
    }
    if (m_thread.joinable())
        m_thread.join();
}

} // namespace agent
