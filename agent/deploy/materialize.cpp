#include <agent/deploy/materialize.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::string_view k_temp_prefix = ".tmp-";

common::Status write_entry(const common::ManifestEntry& entry, const BlobStore& blobs,
                           const fs::path& root) {
    fs::path target = root / fs::path(entry.path);
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec)
        return make_error(ErrorKind::io, "cannot create " + target.parent_path().string() + ": " +
                                             common::os_error_text(ec.value()));
    fs::copy_file(blobs.path(entry.digest), target, fs::copy_options::overwrite_existing, ec);
    if (ec)
        return make_error(ErrorKind::io, "cannot write " + entry.path + " from blob " +
                                             entry.digest + ": " +
                                             common::os_error_text(ec.value()));
    auto perms = entry.kind == common::EntryKind::executable ? fs::perms(0755) : fs::perms(0644);
    fs::permissions(target, perms, ec);
    if (ec)
        return make_error(ErrorKind::io,
                          "cannot chmod " + entry.path + ": " + common::os_error_text(ec.value()));
    return {};
}

common::Status write_symlink(const common::ManifestEntry& entry, const fs::path& root) {
    fs::path link = root / fs::path(entry.path);
    std::error_code ec;
    fs::create_directories(link.parent_path(), ec);
    if (!ec)
        fs::create_symlink(fs::path(entry.target), link, ec);
    if (ec)
        return make_error(ErrorKind::io, "cannot create symlink " + entry.path + ": " +
                                             common::os_error_text(ec.value()));
    return {};
}

common::Status write_tree(const common::Manifest& manifest, const BlobStore& blobs,
                          const fs::path& root) {
    for (const auto& entry : manifest.entries) {
        if (entry.kind == common::EntryKind::symlink)
            continue;
        if (auto written = write_entry(entry, blobs, root); !written)
            return written;
    }
    for (const auto& entry : manifest.entries) {
        if (entry.kind != common::EntryKind::symlink)
            continue;
        if (auto written = write_symlink(entry, root); !written)
            return written;
    }
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
