// Blob collection and disk usage: deployctl agent df | prune, and the
// collection after each prune that deleted a release (docs/design.md §4).

#include <agent/deploy/build_cache.hpp>
#include <agent/deploy/engine.hpp>
#include <agent/deploy/file_copy.hpp>
#include <common/duration.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <set>
#include <sys/stat.h>
#include <utility>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

// Files already counted: a file hard-linked in several places (a kept build and
// its release) counts once.
using Counted = LinkedOnce;

// The bytes of the regular files under `path` (or of `path` itself) not in
// `counted` yet; symlinks are not followed.
std::uint64_t tree_bytes(const fs::path& path, Counted& counted) {
    auto bytes_of = [&counted](const fs::path& file) -> std::uint64_t {
        struct stat st {};
        if (::lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || !counted.first(st))
            return 0;
        return static_cast<std::uint64_t>(st.st_size);
    };
    std::error_code ec;
    if (fs::is_regular_file(fs::symlink_status(path, ec)))
        return bytes_of(path);
    std::uint64_t total = 0;
    for (auto it = fs::recursive_directory_iterator(path, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        std::error_code kind;
        if (it->is_regular_file(kind) && !it->is_symlink(kind))
            total += bytes_of(it->path());
    }
    return total;
}

// An untagged image younger than this may be a layer of a build in progress.
constexpr std::int64_t k_layer_grace_s = 3600;

// Of `images`, those no release in the store has, and untagged ones older
// than k_layer_grace_s.
std::vector<runtime::StoredImage> unused_of(std::vector<runtime::StoredImage> images,
                                            Store& store) {
    std::set<std::pair<std::string, std::string>> kept; // app, release
    for (const auto& row : store.all_releases())
        kept.emplace(row.app, row.id);
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    std::vector<runtime::StoredImage> out;
    for (auto& image : images) {
        const bool unused = image.release.empty() ? image.created < now - k_layer_grace_s
                                                  : !kept.count({image.app, image.release});
        if (unused)
            out.push_back(std::move(image));
    }
    return out;
}

} // namespace

std::vector<runtime::StoredImage> Engine::unused_images() {
    if (!m_container_runtime)
        return {};
    auto images = m_container_runtime->images();
    if (!images)
        return {};
    return unused_of(std::move(*images), *m_store);
}

common::Result<std::set<std::string>> Engine::blobs_in_use() {
    std::set<std::string> used;
    for (const auto& row : m_store->all_releases())
        if (!release_digests(row, used) && !common::is_settled(row.state))
            return make_error(ErrorKind::refused,
                              fmt::format("cannot tell which blobs {} {} ({}) uses: it has no "
                                          "blob list yet; blobs are collected once it is done",
                                          row.app, row.id, common::to_string(row.state)));
    return used;
}

common::Result<Collected> Engine::collect_garbage(bool dry_run) {
    std::lock_guard lock(m_collect_mutex);
    TRY_ASSIGN(auto used, blobs_in_use());
    Collected out;
    out.dry_run = dry_run;
    out.blobs = m_blobs.collect(used, dry_run);
    for (const auto& blob : out.blobs)
        out.bytes += blob.bytes;
    if (!dry_run && !out.blobs.empty())
        common::log_info(fmt::format("collected {} unused blob(s), {}", out.blobs.size(),
                                     common::format_bytes(out.bytes)));
    out.logs = expire_logs(dry_run);
    // The agent's images no kept release has (their release went while the
    // engine refused to remove them, or the agent was down), and old layers.
    for (auto& image : unused_images())
        if (dry_run || m_container_runtime->remove_image(image))
            out.images.push_back(std::move(image));
    if (!dry_run && !out.images.empty())
        common::log_info(fmt::format("removed {} unused image(s)", out.images.size()));
    return out;
}

void Engine::collect_after_prune() {
    if (auto collected = collect_garbage(false); !collected)
        common::log_warn("blobs not collected: " + collected.error().message);
}

common::Result<DiskUsage> Engine::disk_usage() {
    const auto& data = m_options.data_dir;
    DiskUsage usage;
    usage.data_dir = data.root().string();
    TRY_ASSIGN(usage.filesystem, disk_space(data.root()));
    usage.reserve = m_options.disk.min_free().reserve(usage.filesystem.size);
    usage.file_reserve = inode_reserve(usage.filesystem, usage.reserve);
    std::map<std::string, std::uint64_t> stored;
    for (const auto& blob : m_blobs.list()) {
        stored[blob.digest] = blob.bytes;
        usage.blobs += blob.bytes;
    }
    usage.blob_count = stored.size();
    std::map<std::string, std::set<std::string>> used_by; // app -> digests
    for (const auto& row : m_store->all_releases())
        release_digests(row, used_by[row.app]);
    std::set<std::string> all_used;
    for (const auto& [app, digests] : used_by)
        all_used.insert(digests.begin(), digests.end());
    for (const auto& [digest, bytes] : stored)
        if (!all_used.count(digest))
            usage.unused_blobs += bytes;
    std::map<std::string, std::uint64_t> image_bytes; // by app
    if (m_container_runtime)
        if (auto images = m_container_runtime->images()) { // asked once: two engine calls
            for (const auto& image : *images) {
                image_bytes[image.app] += image.bytes;
                usage.images += image.bytes;
            }
            for (const auto& image : unused_of(std::move(*images), *m_store))
                usage.unused_images += image.bytes;
        }
    for (const auto& app : m_store->apps()) {
        AppDiskUsage entry;
        entry.images = image_bytes[app];
        entry.app = app;
        // Releases first: the build cache's links to their files (kept builds, saved
        // paths) count there, so BUILD CACHE is what clearing it would free.
        Counted counted;
        entry.releases = tree_bytes(data.app_dir(app) / "releases", counted);
        entry.logs = tree_bytes(data.app_dir(app) / "logs", counted);
        entry.build_cache = tree_bytes(data.build_cache(app), counted);
        for (const auto& digest : used_by[app])
            if (auto it = stored.find(digest); it != stored.end())
                entry.blobs += it->second;
        usage.apps.push_back(std::move(entry));
    }
    Counted counted;
    usage.total = tree_bytes(data.root(), counted);
    return usage;
}

common::Result<BuildCacheInfo> Engine::build_cache(const std::string& app) {
    auto rows = m_store->releases(app);
    if (rows.empty())
        return make_error(ErrorKind::not_found, "no app named " + app);
    BuildCacheInfo info;
    info.app = app;
    info.max = common::AppConfig().build.cache_max;
    if (auto production = m_store->production(app))
        if (auto config = common::parse_config(production->config, "deploy.toml"))
            info.max = config->build.cache_max;
    info.entries = BuildCache(m_options.data_dir.build_cache(app)).entries();
    return info;
}

common::Result<std::uint64_t> Engine::clear_build_cache(const std::string& app) {
    if (m_store->releases(app).empty())
        return make_error(ErrorKind::not_found, "no app named " + app);
    BuildCache cache(m_options.data_dir.build_cache(app));
    TRY_ASSIGN(auto held, cache.lock(false));
    TRY(m_store->clear_build_keys(app)); // an image is not reused either
    const auto bytes = cache.clear();
    common::log_info(fmt::format("{}: build cache cleared, {}", app, common::format_bytes(bytes)));
    return bytes;
}

} // namespace agent
