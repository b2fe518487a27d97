#include <agent/deploy/file_copy.hpp>
#include <agent/deploy/materialize.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>
#include <common/parallel.hpp>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
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
                           const fs::path& root) {
    const fs::path target = root / fs::path(entry.path);
    const mode_t mode = entry.kind == common::EntryKind::executable ? 0755 : 0644;
    if (auto copied = copy_file(blobs.path(entry.digest), target, mode); !copied)
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

// The folders first, then the files on a thread per core (up to 4: creating files is most
// of the time, and the file system does it in parallel across folders), a folder's files
// to one thread, then the symlinks.
common::Status write_tree(const common::Manifest& manifest, const BlobStore& blobs,
                          const fs::path& root) {
    Folders folders;
    std::vector<const common::ManifestEntry*> files;
    for (const auto& entry : manifest.entries) {
        TRY(folders.make((root / fs::path(entry.path)).parent_path()));
        if (entry.kind != common::EntryKind::symlink)
            files.push_back(&entry);
    }
    // A folder's files (up to 256) to one thread at a time: two threads creating files in
    // one folder wait on its lock.
    const auto runs = common::runs(files.size(), 256, [&](std::size_t a, std::size_t b) {
        return fs::path(files[a]->path).parent_path() == fs::path(files[b]->path).parent_path();
    });
    TRY(common::parallel_for(runs.size(), common::worker_count(files.size(), 128, 4),
                             [&](std::size_t, std::size_t run) -> common::Status {
                                 for (auto i = runs[run].first; i < runs[run].second; ++i)
                                     TRY(write_entry(*files[i], blobs, root));
                                 return {};
                             }));
    for (const auto& entry : manifest.entries)
        if (entry.kind == common::EntryKind::symlink)
            if (auto written = write_symlink(entry, root); !written)
                return written;
    return {};
}

} // namespace

fs::path materialize_temp_dir(const fs::path& release_dir) {
    return release_dir.parent_path() /
           (std::string(k_temp_prefix) + release_dir.filename().string());
}

common::Status materialize(const common::Manifest& manifest, const BlobStore& blobs,
                           const fs::path& release_dir) {
    fs::path temp = materialize_temp_dir(release_dir);
    std::error_code ec;
    fs::remove_all(temp, ec);
    fs::create_directories(temp, ec);
    if (ec)
        return make_error(ErrorKind::io, "cannot create " + temp.string() + ": " +
                                             common::os_error_text(ec.value()));
    fs::permissions(temp, fs::perms(0755), ec);
    if (auto written = write_tree(manifest, blobs, temp); !written) {
        fs::remove_all(temp, ec);
        return written;
    }
    // Folders 0755 whatever the agent's umask (0077): an image built from the
    // tree keeps its modes, and its app may run as another user than root.
    // Others reach none of it: apps/ is the agent's alone.
    for (auto it = fs::recursive_directory_iterator(temp, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        std::error_code kind; // a dangling symlink is no folder, and no error
        if (!it->is_symlink(kind) && it->is_directory(kind))
            fs::permissions(it->path(), fs::perms(0755), ec);
    }
    if (ec) {
        auto error = make_error(ErrorKind::io, "cannot chmod in " + temp.string() + ": " +
                                                   common::os_error_text(ec.value()));
        fs::remove_all(temp, ec);
        return error;
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
    return {};
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
