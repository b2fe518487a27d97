#include <cli/package/collect.hpp>
#include <cli/package/git_tree.hpp>
#include <common/fs.hpp>
#include <common/hash.hpp>
#include <common/number.hpp>
#include <common/storable_path.hpp>
#include <common/version.hpp>

#include <fmt/format.h>
#include <git2.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

namespace cli::package {

namespace {

using common::ErrorKind;
namespace fs = std::filesystem;

using common::git::DigestCache;

common::Error usage(std::string message) {
    return common::make_error(ErrorKind::usage, std::move(message));
}

// A file the agent would refuse to store (common/storable_path.hpp), refused here first
// with what to do about it: nothing is sent.
common::Status check_storable(const common::Manifest& manifest) {
    constexpr std::string_view k_rule =
        "the agent stores only names that are valid UTF-8 without control characters "
        "(U+0000-U+001F, U+007F-U+009F)";
    for (const auto& entry : manifest.entries) {
        if (auto flaw = common::find_path_flaw(entry.path))
            return usage(fmt::format(
                "cannot deploy \"{}\": its name contains {} at byte {}, and {}. Rename it "
                "(git mv), or leave it out of the deployment (git rm --cached, and list it in "
                ".gitignore)",
                common::escape_path(entry.path), flaw->what, flaw->offset, k_rule));
        if (entry.kind != common::EntryKind::symlink)
            continue;
        if (auto flaw = common::find_path_flaw(entry.target))
            return usage(fmt::format(
                "cannot deploy the symlink \"{}\": its target \"{}\" contains {} at byte {}, "
                "and {}. Point it elsewhere, or leave it out of the deployment (git rm --cached, "
                "and list it in .gitignore)",
                entry.path, common::escape_path(entry.target), flaw->what, flaw->offset, k_rule));
    }
    return {};
}

template <class T, void (*Free)(T*)> struct Owned {
    T* ptr = nullptr;
    ~Owned() { Free(ptr); }
};

// DIR relative to the repository's working directory, '/'-separated ("" at the root).
std::string prefix_in_repo(const fs::path& workdir, const fs::path& dir) {
    auto rel = fs::weakly_canonical(dir).lexically_relative(fs::weakly_canonical(workdir));
    std::string prefix = rel.generic_string();
    if (prefix == ".")
        prefix.clear();
    while (!prefix.empty() && prefix.back() == '/')
        prefix.pop_back();
    return prefix;
}

// The tree to deploy: HEAD's tree, or its subtree at `prefix`. Null when DIR
// is not in the committed tree.
common::Result<git_tree*> head_subtree(git_repository* repo, git_commit* commit,
                                       const std::string& prefix) {
    git_tree* root = nullptr;
    if (git_commit_tree(&root, commit) != 0)
        return common::make_error(ErrorKind::io,
                                  "cannot read HEAD's tree: " + common::git::last_error());
    if (prefix.empty())
        return root;
    Owned<git_tree, git_tree_free> owned_root{root};
    git_tree_entry* entry = nullptr;
    if (git_tree_entry_bypath(&entry, root, prefix.c_str()) != 0)
        return nullptr;
    Owned<git_tree_entry, git_tree_entry_free> owned_entry{entry};
    if (git_tree_entry_type(entry) != GIT_OBJECT_TREE)
        return nullptr;
    git_tree* sub = nullptr;
    if (git_tree_lookup(&sub, repo, git_tree_entry_id(entry)) != 0)
        return common::make_error(ErrorKind::io,
                                  "cannot read " + prefix + ": " + common::git::last_error());
    return sub;
}

// .git/deployctl/roots: "TAG GIT-TREE-ID MERKLE-ROOT FILES BYTES BLOBS BLOB-BYTES" per line,
// the newest last. The tag names the node format of common/tree.hpp, the line's format and
// this deployctl's version: another version may package a git tree otherwise (which files,
// which modes), so it does not trust these.
std::string roots_tag() {
    return std::string("2/") + common::version();
}
constexpr std::size_t k_roots_kept = 64;

struct KnownTree {
    std::string root;
    SourceTree::Figures figures;
};

std::string known_text(const KnownTree& known) {
    return fmt::format("{} {} {} {} {}", known.root, known.figures.files, known.figures.bytes,
                       known.figures.blobs, known.figures.blob_bytes);
}

// Sets `out` to the whole number `text` is.
template <class T> bool parse_number(std::string_view text, T& out) {
    const auto value = common::parse_whole_number<T>(text);
    if (value)
        out = *value;
    return value.has_value();
}

// The newest record for `key` ("TAG GIT-TREE-ID "), if any.
std::optional<KnownTree> newest_known(const std::vector<std::string_view>& lines,
                                      const std::string& key) {
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
        if (!it->starts_with(key))
            continue;
        std::vector<std::string_view> fields;
        for (auto rest = it->substr(key.size()); !rest.empty();) {
            const auto space = rest.find(' ');
            fields.push_back(rest.substr(0, space));
            rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
        }
        KnownTree known;
        if (fields.size() == 5 && common::is_sha256_hex(fields[0]) &&
            parse_number(fields[1], known.figures.files) &&
            parse_number(fields[2], known.figures.bytes) &&
            parse_number(fields[3], known.figures.blobs) &&
            parse_number(fields[4], known.figures.blob_bytes)) {
            known.root = std::string(fields[0]);
            return known;
        }
    }
    return std::nullopt;
}

// The manifest entry at `path`, through one symlink inside the tree.
const common::ManifestEntry* find_entry(const common::Manifest& manifest, const std::string& path,
                                        int depth = 0) {
    for (const auto& e : manifest.entries) {
        if (e.path != path)
            continue;
        if (e.kind != common::EntryKind::symlink)
            return &e;
        if (depth > 0)
            return nullptr;
        auto target = (fs::path(path).parent_path() / e.target).lexically_normal().generic_string();
        if (target.starts_with("../") || fs::path(e.target).is_absolute())
            return nullptr;
        return find_entry(manifest, target, depth + 1);
    }
    return nullptr;
}

std::string first_line(const char* message) {
    std::string text = message ? message : "";
    auto nl = text.find('\n');
    if (nl != std::string::npos)
        text.resize(nl);
    return text;
}

// The bytes of `path` when it is a regular file of `size` bytes whose SHA-256 is `digest`
// (the committed content, still checked out), else nullopt: it was changed, removed, is
// another kind of file, or cannot be read (git has the content). Never blocks on a FIFO.
std::optional<std::string> read_if_same(const fs::path& path, std::uint64_t size,
                                        const std::string& digest) {
    auto bytes =
        common::read_regular_file(path, [&](std::uint64_t found) { return found == size; });
    if (!bytes || bytes->size() != size || common::sha256_hex(*bytes) != digest)
        return std::nullopt;
    return bytes;
}

} // namespace

struct SourceTree::Impl {
    git_repository* repo = nullptr;
    common::Manifest manifest;
    std::map<std::string, detail::BlobSource> sources;
    std::string commit;
    std::string message;
    bool dirty = false;
    bool empty = true; // HEAD's tree (at DIR) has no entry, or there is none
    Mode mode = Mode::committed;
    std::string prefix;
    // git's status of the working tree (the changed paths), read on a thread of its own: a
    // committed deploy needs it only for its warning, which waits until the end.
    std::thread status;
    common::Result<std::vector<std::string>> changed = std::vector<std::string>{};
    std::mutex status_mutex; // joining `status`
    std::vector<std::string> warnings;
    std::string tree_oid;  // of the tree the manifest is, when it is a committed one
    git_oid tree_id{};     // of the tree deployed (walked by load())
    fs::path roots_file;   // .git/deployctl/roots
    fs::path digests_file; // .git/deployctl/digests
    fs::path worktree;     // the folder the manifest's paths are relative to, checked out
    // The tree's record in roots when packaging found one: the manifest waits for load().
    std::optional<KnownTree> known;
    bool loaded = false;
    std::optional<SourceTree::Figures> figures; // of the manifest, once counted
    // read(), load() and the rest are called from one thread per host (cli/fleet.hpp).
    mutable std::mutex mutex;

    // The changed paths, once the status thread is done.
    const common::Result<std::vector<std::string>>& wait_changed() {
        std::lock_guard lock(status_mutex);
        if (status.joinable())
            status.join();
        return changed;
    }

    ~Impl() {
        wait_changed();
        git_repository_free(repo);
    }
};

namespace {

// The manifest from what the walk (and --dirty's overlay) collected.
common::Status take_collected(SourceTree::Impl& impl, detail::Collected& collected) {
    for (auto& [path, entry] : collected.entries)
        impl.manifest.entries.push_back(std::move(entry));
    // The agent refuses such a tree too; refusing it here sends nothing at all.
    TRY(check_storable(impl.manifest));
    if (auto valid = common::validate_manifest(impl.manifest); !valid)
        return usage("cannot deploy this tree: " + valid.error().message);
    impl.sources = std::move(collected.sources);
    impl.warnings = std::move(collected.warnings);
    impl.loaded = true;
    return {};
}

// load() of a tree whose walk packaging left for later (a tree an earlier deploy recorded,
// or Walk::at_load). Holds impl.mutex.
common::Status walk_later(SourceTree::Impl& impl) {
    git_tree* tree = nullptr;
    if (git_tree_lookup(&tree, impl.repo, &impl.tree_id) != 0)
        return common::make_error(ErrorKind::io,
                                  "cannot read the tree to deploy: " + common::git::last_error());
    Owned<git_tree, git_tree_free> owned_tree{tree};
    detail::Collected collected;
    DigestCache cache(impl.digests_file);
    collected.cache = &cache;
    collected.worktree = impl.worktree;
    TRY(common::git::walk_tree(impl.repo, tree, collected));
    cache.save();
    return take_collected(impl, collected);
}

} // namespace

SourceTree::SourceTree(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
SourceTree::~SourceTree() = default;
SourceTree::SourceTree(SourceTree&&) noexcept = default;
SourceTree& SourceTree::operator=(SourceTree&&) noexcept = default;

common::Status SourceTree::load() const {
    std::lock_guard lock(m_impl->mutex);
    if (m_impl->loaded)
        return {};
    return walk_later(*m_impl);
}
bool SourceTree::loaded() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->loaded;
}
const common::Manifest& SourceTree::manifest() const {
    return m_impl->manifest;
}
SourceTree::Figures SourceTree::figures() const {
    std::lock_guard lock(m_impl->mutex);
    if (!m_impl->loaded && m_impl->known)
        return m_impl->known->figures;
    if (m_impl->figures)
        return *m_impl->figures;
    Figures figures;
    figures.files = m_impl->manifest.entries.size();
    figures.bytes = m_impl->manifest.total_bytes();
    std::unordered_set<std::string_view> seen;
    seen.reserve(figures.files);
    for (const auto& e : m_impl->manifest.entries)
        if (!e.digest.empty() && seen.insert(e.digest).second) {
            ++figures.blobs;
            figures.blob_bytes += e.size;
        }
    if (m_impl->loaded) // counted once: deploy asks for them more than once
        m_impl->figures = figures;
    return figures;
}
const std::string& SourceTree::commit() const {
    return m_impl->commit;
}
const std::string& SourceTree::message() const {
    return m_impl->message;
}
bool SourceTree::dirty() const {
    return m_impl->dirty;
}
bool SourceTree::empty() const {
    return m_impl->empty;
}
Mode SourceTree::mode() const {
    return m_impl->mode;
}
const std::string& SourceTree::prefix() const {
    return m_impl->prefix;
}
common::Result<std::size_t> SourceTree::uncommitted() const {
    const auto& changed = m_impl->wait_changed();
    if (!changed)
        return changed.error();
    return changed->size();
}
const std::vector<std::string>& SourceTree::warnings() const {
    return m_impl->warnings;
}

std::string SourceTree::known_root() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->known ? m_impl->known->root : "";
}

void SourceTree::remember_root(const std::string& root, const Figures& figures) const {
    if (m_impl->tree_oid.empty() || !common::is_sha256_hex(root) || !loaded() ||
        !m_impl->warnings.empty())
        return;
    const KnownTree known{root, figures};
    std::lock_guard lock(m_impl->mutex);
    m_impl->known = known;
    const auto read = common::read_file(m_impl->roots_file);
    const std::string text = read ? *read : ""; // none yet
    const auto lines = detail::split_lines(text);
    const auto key = roots_tag() + " " + m_impl->tree_oid + " ";
    if (auto newest = newest_known(lines, key); newest && known_text(*newest) == known_text(known))
        return;
    const auto line = key + known_text(known) + "\n";
    std::error_code ec;
    fs::create_directories(m_impl->roots_file.parent_path(), ec);
    if (lines.size() < 2 * k_roots_kept)
        return (void)common::write_unsynced(m_impl->roots_file, line, true);
    std::string kept; // the newest lines and this one
    for (auto it = lines.end() - k_roots_kept; it != lines.end(); ++it)
        kept.append(*it).append("\n");
    (void)common::write_unsynced(m_impl->roots_file, kept + line, false);
}

common::Result<std::string> SourceTree::read(const std::string& digest) const {
    std::lock_guard lock(m_impl->mutex);
    auto it = m_impl->sources.find(digest);
    if (it == m_impl->sources.end())
        return common::make_error(ErrorKind::internal, "no file with digest " + digest);
    if (!it->second.disk_path.empty())
        return common::read_file(it->second.disk_path);
    return common::git::read_blob(m_impl->repo, it->second.git_oid);
}

common::Result<std::string> SourceTree::read(const std::string& digest, std::string_view path,
                                             std::uint64_t size) const {
    // A committed file whose working copy still holds its content: read there, which costs
    // less than git's (a loose object is inflated), and used only when it hashes the same.
    if (!m_impl->worktree.empty() && !path.empty()) {
        bool in_git = false;
        {
            std::lock_guard lock(m_impl->mutex);
            auto it = m_impl->sources.find(digest);
            in_git = it != m_impl->sources.end() && it->second.disk_path.empty();
        }
        if (in_git)
            if (auto same = read_if_same(m_impl->worktree / path, size, digest))
                return std::move(*same);
    }
    return read(digest);
}

common::Result<std::optional<std::string>> SourceTree::read_path(const std::string& path) const {
    {
        std::lock_guard lock(m_impl->mutex);
        if (!m_impl->loaded) { // a regular file straight from git; anything else by the manifest
            git_tree* tree = nullptr;
            if (git_tree_lookup(&tree, m_impl->repo, &m_impl->tree_id) != 0)
                return common::make_error(ErrorKind::io, "cannot read the tree to deploy: " +
                                                             common::git::last_error());
            Owned<git_tree, git_tree_free> owned_tree{tree};
            git_tree_entry* entry = nullptr;
            const int rc = git_tree_entry_bypath(&entry, tree, path.c_str());
            if (rc == GIT_ENOTFOUND)
                return std::optional<std::string>();
            if (rc != 0)
                return common::make_error(ErrorKind::io,
                                          "cannot read " + path + ": " + common::git::last_error());
            Owned<git_tree_entry, git_tree_entry_free> owned_entry{entry};
            const auto mode = git_tree_entry_filemode(entry);
            if (mode == GIT_FILEMODE_BLOB || mode == GIT_FILEMODE_BLOB_EXECUTABLE) {
                TRY_ASSIGN(auto text, common::git::read_blob(
                                          m_impl->repo, git_oid_tostr_s(git_tree_entry_id(entry))));
                return std::optional<std::string>(std::move(text));
            }
        }
    }
    TRY(load());
    const auto* entry = find_entry(m_impl->manifest, path);
    if (!entry || entry->digest.empty())
        return std::optional<std::string>();
    TRY_ASSIGN(auto text, read(entry->digest));
    return std::optional<std::string>(std::move(text));
}

common::Result<SourceTree> package_source(const fs::path& dir, Mode mode, Walk walk) {
    common::git::init_libgit2();
    // The user's own repository: git does not check an object's id against its bytes each
    // time it reads it either (git fsck does). 1,200 trees hashed again cost a first walk
    // a few milliseconds.
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        return usage(fmt::format("{} is not a directory", dir.string()));
    auto impl = std::make_unique<SourceTree::Impl>();
    if (git_repository_open_ext(&impl->repo, dir.c_str(), 0, nullptr) != 0)
        return usage(fmt::format("{} is not in a git repository: deployctl deploys the committed "
                                 "tree (run git init, git add and git commit first)",
                                 fs::absolute(dir).string()));
    const char* workdir = git_repository_workdir(impl->repo);
    if (!workdir)
        return usage(fmt::format("{} is a bare git repository", dir.string()));
    if (git_repository_head_unborn(impl->repo) == 1)
        return usage("the git repository has no commits yet: commit your app first "
                     "(git add -A && git commit -m \"First deploy\")");
    git_object* head = nullptr;
    if (git_revparse_single(&head, impl->repo, "HEAD^{commit}") != 0)
        return usage("cannot resolve HEAD: " + common::git::last_error());
    Owned<git_object, git_object_free> owned_head{head};
    auto* commit = reinterpret_cast<git_commit*>(head);
    impl->commit = git_oid_tostr_s(git_commit_id(commit));
    impl->message = first_line(git_commit_message(commit));

    std::string prefix = prefix_in_repo(workdir, dir);
    impl->mode = mode;
    impl->prefix = prefix;
    impl->worktree = fs::path(workdir) / prefix;
    auto tree = head_subtree(impl->repo, commit, prefix);
    if (!tree)
        return tree.error();
    Owned<git_tree, git_tree_free> owned_tree{*tree};
    if (!*tree && mode == Mode::committed)
        return usage(
            fmt::format("{}/ is not in the last commit: commit it, or pass --dirty", prefix));

    // git's status (a stat of every file of the working tree) on a thread of its own, with
    // a repository handle of its own, while this one walks HEAD's tree. --dirty waits for it
    // below; a committed deploy only when it asks how many changes it left out.
    impl->status = std::thread([&impl = *impl, dir, prefix, mode] {
        git_repository* repo = nullptr;
        if (git_repository_open_ext(&repo, dir.c_str(), 0, nullptr) != 0) {
            impl.changed = common::make_error(ErrorKind::io, "cannot open the git repository: " +
                                                                 common::git::last_error());
            return;
        }
        Owned<git_repository, git_repository_free> owned_repo{repo};
        // --dirty overlays every untracked file; otherwise they are only counted, an
        // untracked folder as one change, as git status counts it.
        impl.changed = detail::changed_paths(repo, prefix, mode == Mode::dirty);
    });

    // A committed tree an earlier deploy recorded: its manifest waits until needed.
    impl->roots_file = fs::path(git_repository_path(impl->repo)) / "deployctl" / "roots";
    // .git/deployctl/digests (a worktree's own git folder holds its own).
    impl->digests_file = fs::path(git_repository_path(impl->repo)) / "deployctl" / "digests";
    if (*tree) {
        impl->tree_id = *git_tree_id(*tree);
        if (mode == Mode::committed)
            if (const auto text = common::read_file(impl->roots_file))
                impl->known =
                    newest_known(detail::split_lines(*text),
                                 roots_tag() + " " + git_oid_tostr_s(&impl->tree_id) + " ");
    }
    impl->empty = !*tree || git_tree_entrycount(*tree) == 0;
    // Its files listed now, or by load(): a tree recorded, or the caller's choice.
    const bool later =
        impl->known.has_value() || (mode == Mode::committed && walk == Walk::at_load);
    detail::Collected collected;
    std::optional<DigestCache> cache;
    if (*tree && !later) {
        cache.emplace(impl->digests_file);
        collected.cache = &*cache;
        collected.worktree = impl->worktree;
        if (auto st = common::git::walk_tree(impl->repo, *tree, collected); !st)
            return st.error();
    }
    if (mode == Mode::dirty) {
        const auto& changed = impl->wait_changed();
        if (!changed)
            return changed.error();
        if (auto st = detail::overlay_worktree(workdir, prefix, *changed, collected); !st)
            return st.error();
        impl->dirty = !changed->empty();
    }
    if (cache)
        cache->save();
    if (*tree && !impl->dirty)
        impl->tree_oid = git_oid_tostr_s(git_tree_id(*tree));
    if (!later)
        TRY(take_collected(*impl, collected));
    return SourceTree(std::move(impl));
}

} // namespace cli::package
