// Uncommitted changes: counting them, and (--dirty) taking them from disk.

#include <cli/package/collect.hpp>
#include <common/hash.hpp>
#include <common/storable_path.hpp>

#include <fmt/format.h>
#include <git2.h>

#include <ctime>
#include <sys/stat.h>

namespace cli::package::detail {

namespace {

namespace fs = std::filesystem;

bool under_prefix(std::string_view path, const std::string& prefix) {
    if (prefix.empty())
        return true;
    return path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '/';
}

const char* path_of(const git_status_entry* e) {
    if (e->index_to_workdir && e->index_to_workdir->new_file.path)
        return e->index_to_workdir->new_file.path;
    if (e->head_to_index && e->head_to_index->new_file.path)
        return e->head_to_index->new_file.path;
    return nullptr;
}

// Reads one working-tree path into `out`; a missing path removes it.
common::Status take_from_disk(const fs::path& file, const std::string& rel, Collected& out) {
    struct stat st {};
    if (lstat(file.c_str(), &st) != 0) {
        out.entries.erase(rel); // deleted
        return {};
    }
    common::ManifestEntry m;
    m.path = rel;
    if (S_ISLNK(st.st_mode)) {
        std::error_code ec;
        auto target = fs::read_symlink(file, ec);
        if (ec)
            return common::make_error(common::ErrorKind::io,
                                      fmt::format("cannot read symlink {}: {}", rel, ec.message()));
        m.kind = common::EntryKind::symlink;
        m.target = target.string();
    } else if (S_ISREG(st.st_mode)) {
        m.kind = (st.st_mode & S_IXUSR) ? common::EntryKind::executable : common::EntryKind::file;
        const auto key = DigestCache::file_key(st);
        if (const auto* known = out.cache ? out.cache->find(key) : nullptr) {
            m.digest = known->digest;
        } else {
            auto digest = common::sha256_file(file);
            if (!digest)
                return digest.error();
            m.digest = *digest;
            // A file changed in the last seconds may change again within the clock's
            // tick, keeping its key: it is not trusted to the cache (git's "racy" rule).
            if (out.cache && std::time(nullptr) - st.st_mtim.tv_sec > 2 &&
                std::time(nullptr) - st.st_ctim.tv_sec > 2)
                out.cache->add(key, m.digest, static_cast<std::uint64_t>(st.st_size));
        }
        m.size = static_cast<std::uint64_t>(st.st_size);
        out.sources[m.digest] = BlobSource{{}, file};
    } else {
        out.warnings.push_back(
            fmt::format("skipping {}: not a regular file or symlink", common::escape_path(rel)));
        out.entries.erase(rel);
        return {};
    }
    out.entries[rel] = std::move(m);
    return {};
}

} // namespace

common::Result<std::vector<std::string>>
changed_paths(git_repository* repo, const std::string& prefix, bool each_untracked_file) {
    git_status_options opts = GIT_STATUS_OPTIONS_INIT;
    opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
    opts.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
    if (each_untracked_file)
        opts.flags |= GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS;
    std::string spec = prefix;
    char* specs[] = {spec.data()};
    if (!prefix.empty())
        opts.pathspec = {specs, 1};
    git_status_list* list = nullptr;
    if (git_status_list_new(&list, repo, &opts) != 0) {
        const git_error* e = git_error_last();
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot read the git status: {}",
                                              e && e->message ? e->message : "unknown error"));
    }
    std::vector<std::string> paths;
    for (std::size_t i = 0, n = git_status_list_entrycount(list); i < n; ++i) {
        const git_status_entry* e = git_status_byindex(list, i);
        if (e->status == GIT_STATUS_CURRENT || (e->status & GIT_STATUS_IGNORED))
            continue;
        const char* path = path_of(e);
        if (path && under_prefix(path, prefix))
            paths.emplace_back(path);
    }
    git_status_list_free(list);
    return paths;
}

common::Status overlay_worktree(const fs::path& workdir, const std::string& prefix,
                                const std::vector<std::string>& changed, Collected& out) {
    for (const auto& path : changed) {
        std::string rel = prefix.empty() ? path : path.substr(prefix.size() + 1);
        if (auto st = take_from_disk(workdir / path, rel, out); !st)
            return st;
    }
    return {};
}

} // namespace cli::package::detail
