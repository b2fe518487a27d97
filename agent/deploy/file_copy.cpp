#include <agent/deploy/file_copy.hpp>
#include <common/fs.hpp>
#include <common/parallel.hpp>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <linux/fs.h>
#include <map>
#include <set>
#include <string>
#include <sys/ioctl.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

common::Error os_error(int error, const std::string& what) {
    return make_error(common::io_error_kind(error), what + ": " + common::os_error_text(error));
}

using Entry = TreeEntry;

// Gives `to` the owner of `st` when it has another one and the agent may set it (root);
// the set-user/group-ID bits a change of owner clears are set again.
common::Status keep_owner(const fs::path& to, const struct stat& st) {
    if (st.st_uid == ::geteuid() && st.st_gid == ::getegid())
        return {};
    if (::lchown(to.c_str(), st.st_uid, st.st_gid) != 0)
        return errno == EPERM ? common::Status() : os_error(errno, "cannot chown " + to.string());
    if (!S_ISLNK(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID)) != 0 &&
        ::chmod(to.c_str(), st.st_mode & 07777) != 0)
        return os_error(errno, "cannot chmod " + to.string());
    return {};
}

// A regular file: hard-linked to its source (`links`), else copied with its mode, times
// and owner.
common::Status copy_regular(const fs::path& source, const fs::path& target, const struct stat& st,
                            bool links) {
    if (links) {
        if (::link(source.c_str(), target.c_str()) != 0)
            return os_error(errno, "cannot link " + source.string() + " to " + target.string());
        // The file the snapshot saw, not one put in its place since.
        struct stat linked {};
        if (::lstat(target.c_str(), &linked) != 0)
            return os_error(errno, "cannot link " + source.string() + " to " + target.string());
        if (linked.st_ino != st.st_ino || linked.st_dev != st.st_dev)
            return make_error(ErrorKind::io, source.string() + " was replaced since it was listed");
        return {};
    }
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (auto copied = copy_file(source, target, st.st_mode & 07777, times); !copied)
        return make_error(copied.error().kind,
                          "cannot copy " + source.string() + ": " + copied.error().message);
    return keep_owner(target, st);
}

// A symlink or a FIFO made again at `target`, with its times and owner.
common::Status make_special(const fs::path& target, const Entry& entry) {
    if (S_ISLNK(entry.st.st_mode)) {
        if (::symlink(entry.target.c_str(), target.c_str()) != 0)
            return os_error(errno, "cannot create the symlink " + target.string());
    } else if (::mkfifo(target.c_str(), entry.st.st_mode & 07777) != 0 ||
               ::chmod(target.c_str(), entry.st.st_mode & 07777) != 0) {
        return os_error(errno, "cannot create the FIFO " + target.string());
    }
    const struct timespec times[2] = {entry.st.st_atim, entry.st.st_mtim};
    ::utimensat(AT_FDCWD, target.c_str(), times, AT_SYMLINK_NOFOLLOW);
    return keep_owner(target, entry.st);
}

common::Status copy_entries(const fs::path& from, const fs::path& to, const struct stat& root,
                            const std::vector<Entry>& entries, bool links,
                            const std::atomic<bool>* cancel) {
    if (::mkdir(to.c_str(), 0700) != 0)
        return os_error(errno, "cannot create " + to.string());
    std::vector<std::size_t> files;                        // copied (or linked to the source)
    std::vector<std::pair<std::size_t, std::size_t>> same; // a file linked to an earlier one
    std::map<std::pair<dev_t, ino_t>, std::size_t> first;  // of files with several links
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& entry = entries[i];
        const auto target = to / entry.relative;
        if (S_ISDIR(entry.st.st_mode)) {
            if (::mkdir(target.c_str(), 0700) != 0)
                return os_error(errno, "cannot create " + target.string());
        } else if (S_ISREG(entry.st.st_mode)) {
            if (!links && entry.st.st_nlink > 1) {
                auto [it, added] = first.emplace(std::pair{entry.st.st_dev, entry.st.st_ino}, i);
                if (!added) {
                    same.emplace_back(i, it->second);
                    continue;
                }
            }
            files.push_back(i);
        } else if (S_ISCHR(entry.st.st_mode) || S_ISBLK(entry.st.st_mode)) {
            return make_error(ErrorKind::io,
                              "cannot copy the device file " + (from / entry.relative).string());
        }
    }
    // A folder's files (up to 256) to one thread at a time.
    const auto folders = common::runs(files.size(), 256, [&](std::size_t a, std::size_t b) {
        return entries[files[a]].relative.parent_path() == entries[files[b]].relative.parent_path();
    });
    TRY(common::parallel_for(folders.size(), common::worker_count(files.size(), 64, 4),
                             [&](std::size_t, std::size_t run) -> common::Status {
                                 for (auto i = folders[run].first; i < folders[run].second; ++i) {
                                     if (cancel != nullptr && cancel->load())
                                         return make_error(ErrorKind::io, "cancelled");
                                     const auto& entry = entries[files[i]];
                                     TRY(copy_regular(from / entry.relative, to / entry.relative,
                                                      entry.st, links));
                                 }
                                 return {};
                             }));
    for (const auto& [index, earlier] : same) {
        const auto target = to / entries[index].relative;
        if (::link((to / entries[earlier].relative).c_str(), target.c_str()) != 0)
            return os_error(errno, "cannot link " + target.string());
    }
    for (const auto& entry : entries)
        if (S_ISLNK(entry.st.st_mode) || S_ISFIFO(entry.st.st_mode))
            TRY(make_special(to / entry.relative, entry));
    // The folders last, deepest first: each entry made in a folder changed its time.
    auto finish_folder = [](const fs::path& target, const struct stat& st) -> common::Status {
        if (::chmod(target.c_str(), st.st_mode & 07777) != 0)
            return os_error(errno, "cannot chmod " + target.string());
        TRY(keep_owner(target, st));
        const struct timespec times[2] = {st.st_atim, st.st_mtim};
        ::utimensat(AT_FDCWD, target.c_str(), times, 0);
        return {};
    };
    for (auto it = entries.rbegin(); it != entries.rend(); ++it)
        if (S_ISDIR(it->st.st_mode))
            TRY(finish_folder(to / it->relative, it->st));
    return finish_folder(to, root);
}

} // namespace

common::Status copy_file(const fs::path& from, const fs::path& to, mode_t mode,
                         const struct timespec* times, std::optional<std::uint64_t> size,
                         CopyMemo* memo) {
    const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return make_error(common::io_error_kind(errno), common::os_error_text(errno));
    const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        const int saved = errno;
        ::close(in);
        return make_error(common::io_error_kind(saved), common::os_error_text(saved));
    }
    int error = 0;
    auto refused = [](int e) {
        return e == EOPNOTSUPP || e == ENOTTY || e == EXDEV || e == EINVAL || e == ENOSYS;
    };
    // Up to `size`, or to the end of the file (nothing to gain from a size of 0).
    const std::uint64_t until = size && *size > 0 ? *size : UINT64_MAX;
    bool cloned = false;
    if (memo == nullptr || !memo->no_reflink.load(std::memory_order_relaxed)) {
        cloned = ::ioctl(out, FICLONE, in) == 0;
        if (!cloned && memo != nullptr && refused(errno))
            memo->no_reflink.store(true, std::memory_order_relaxed);
    }
    if (!cloned) {
        bool kernel_copy = true;
        char buffer[65536];
        std::uint64_t copied = 0;
        while (copied < until) {
            ssize_t n = kernel_copy ? ::copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0) : 0;
            if (kernel_copy && n < 0 && refused(errno)) {
                kernel_copy = false;
                continue;
            }
            if (!kernel_copy) {
                n = ::read(in, buffer, sizeof buffer);
                for (ssize_t done = 0; n > 0 && done < n;) {
                    const auto w = ::write(out, buffer + done, static_cast<std::size_t>(n - done));
                    if (w < 0 && errno != EINTR) {
                        n = -1;
                        break;
                    }
                    done += w < 0 ? 0 : w;
                }
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                error = errno;
            if (n <= 0)
                break;
            copied += static_cast<std::uint64_t>(n);
        }
    }
    // The exact mode, whatever the agent's umask.
    if (!error && ::fchmod(out, mode) != 0)
        error = errno;
    if (!error && times != nullptr && ::futimens(out, times) != 0)
        error = errno;
    ::close(in);
    if (::close(out) != 0 && !error)
        error = errno;
    if (error)
        return make_error(common::io_error_kind(error), common::os_error_text(error));
    return {};
}

common::Result<TreeSnapshot> snapshot_tree(const fs::path& from) {
    TreeSnapshot tree;
    tree.root = from;
    if (::lstat(from.c_str(), &tree.st) != 0)
        return os_error(errno, "cannot copy " + from.string());
    std::error_code ec;
    if (S_ISLNK(tree.st.st_mode)) {
        tree.target = fs::read_symlink(from, ec).string();
        if (ec)
            return os_error(ec.value(), "cannot read the symlink " + from.string());
    }
    if (!S_ISDIR(tree.st.st_mode))
        return tree;
    for (auto it = fs::recursive_directory_iterator(from, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        Entry entry;
        entry.relative = it->path().lexically_relative(from);
        if (::lstat(it->path().c_str(), &entry.st) != 0)
            return os_error(errno, "cannot copy " + it->path().string());
        if (S_ISSOCK(entry.st.st_mode))
            continue; // meaningless without the process listening on it
        if (S_ISLNK(entry.st.st_mode)) {
            std::error_code link_ec;
            entry.target = fs::read_symlink(it->path(), link_ec).string();
            if (link_ec)
                return os_error(link_ec.value(), "cannot read the symlink " + it->path().string());
        }
        tree.entries.push_back(std::move(entry));
    }
    if (ec)
        return os_error(ec.value(), "cannot read " + from.string());
    return tree;
}

const TreeEntry* entry_at(const TreeSnapshot& tree, const fs::path& relative) {
    const auto wanted = relative.lexically_normal();
    auto at = std::find_if(tree.entries.begin(), tree.entries.end(),
                           [&](const Entry& entry) { return entry.relative == wanted; });
    return at == tree.entries.end() ? nullptr : &*at;
}

std::optional<TreeSnapshot> subtree(const TreeSnapshot& tree, const fs::path& relative) {
    const auto* found = entry_at(tree, relative);
    if (found == nullptr)
        return std::nullopt;
    const auto wanted = found->relative;
    const auto at = tree.entries.begin() + (found - tree.entries.data());
    TreeSnapshot part;
    part.root = tree.root / wanted;
    part.st = at->st;
    part.target = at->target;
    if (!S_ISDIR(part.st.st_mode))
        return part;
    // Below a folder, in the walk's order: its entries follow it, up to the first that is
    // not below it.
    for (auto it = std::next(at); it != tree.entries.end(); ++it) {
        auto below = it->relative.lexically_relative(wanted);
        if (below.empty() || *below.begin() == "..")
            break;
        part.entries.push_back({std::move(below), it->st, it->target});
    }
    return part;
}

common::Status copy_snapshot(const TreeSnapshot& tree, const fs::path& to, bool links,
                             std::uint64_t* bytes, const std::atomic<bool>* cancel) {
    const auto& from = tree.root;
    const auto& root = tree.st;
    std::error_code ec;
    if (fs::symlink_status(to, ec).type() != fs::file_type::not_found)
        return make_error(ErrorKind::io,
                          "cannot copy " + from.string() + " to " + to.string() + ": it exists");
    common::Status copied;
    if (!S_ISDIR(root.st_mode)) { // one file (a [build] cache path may be one)
        Entry entry{fs::path(), root, tree.target};
        if (S_ISREG(root.st_mode))
            copied = copy_regular(from, to, root, links);
        else if (S_ISLNK(root.st_mode) || S_ISFIFO(root.st_mode))
            copied = make_special(to, entry);
        else
            copied = make_error(ErrorKind::io, "cannot copy " + from.string() +
                                                   ": not a folder, file, symlink or FIFO");
        if (!copied)
            fs::remove(to, ec);
        else if (bytes != nullptr && S_ISREG(root.st_mode))
            *bytes = static_cast<std::uint64_t>(root.st_size);
        return copied;
    }
    copied = copy_entries(from, to, root, tree.entries, links, cancel);
    if (!copied) {
        if (cancel == nullptr || !cancel->load()) // cancelled: left to the caller, at leisure
            fs::remove_all(to, ec);
        return make_error(copied.error().kind, "cannot copy " + from.string() + " to " +
                                                   to.string() + ": " + copied.error().message);
    }
    if (bytes != nullptr) {
        *bytes = 0;
        LinkedOnce once;
        for (const auto& entry : tree.entries)
            if (S_ISREG(entry.st.st_mode) && once.first(entry.st))
                *bytes += static_cast<std::uint64_t>(entry.st.st_size);
    }
    return {};
}

common::Status copy_tree(const fs::path& from, const fs::path& to, bool links, std::uint64_t* bytes,
                         const std::atomic<bool>* cancel) {
    TRY_ASSIGN(auto tree, snapshot_tree(from));
    return copy_snapshot(tree, to, links, bytes, cancel);
}

} // namespace agent
