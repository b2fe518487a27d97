#pragma once
// What `deployctl deploy` sends: the manifest of an app's source, taken from
// its git tree (libgit2 stays in the .cpp files).
//
// Committed mode: the tree of HEAD, restricted to DIR when DIR is a
// subdirectory of the repository (manifest paths are relative to DIR).
// Dirty mode: what `git add -A` would commit, i.e. HEAD + modified + untracked
// files that .gitignore does not exclude, minus deleted ones, read from disk.
//
// Contents are not kept in memory: read() fetches a blob again by digest.

#include <common/manifest.hpp>
#include <common/result.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli::package {

enum class Mode { committed, dirty };

class SourceTree {
  public:
    struct Impl;
    explicit SourceTree(std::unique_ptr<Impl> impl);
    ~SourceTree();
    SourceTree(SourceTree&&) noexcept;
    SourceTree& operator=(SourceTree&&) noexcept;

    // The files, their sizes and distinct contents: from the manifest, or for a tree whose
    // figures an earlier deploy recorded (.git/deployctl/roots), from that record.
    struct Figures {
        std::size_t files = 0;
        std::uint64_t bytes = 0;      // of every file
        std::size_t blobs = 0;        // distinct contents
        std::uint64_t blob_bytes = 0; // of the distinct contents
    };
    Figures figures() const;

    // An unchanged tree is deployed without its manifest: packaging a committed tree whose
    // Merkle root an earlier deploy recorded skips the walk of its git tree, and load()
    // walks it when something needs the manifest (the agent lacks part of the tree, or an
    // older agent takes the manifest itself); so does Walk::at_load. Safe from several
    // threads.
    common::Status load() const;
    bool loaded() const;
    // The manifest; only after load() succeeded (empty before).
    const common::Manifest& manifest() const;
    const std::string& commit() const;  // full sha of HEAD
    const std::string& message() const; // first line of its message
    bool dirty() const;                 // uncommitted changes are included
    bool empty() const;                 // the tree holds nothing at all (not even a folder)
    Mode mode() const;                  // as asked: committed, or dirty (--dirty)
    const std::string& prefix() const;  // DIR in the repository ("" at its root)
    // Changes under DIR that git sees but the manifest does not include
    // (committed mode) or includes (dirty mode). Committed mode reads git's status while
    // the tree is deployed: this waits for it (an error when git could not tell).
    common::Result<std::size_t> uncommitted() const;
    const std::vector<std::string>& warnings() const;

    // The Merkle root (common/tree.hpp) of this manifest when an earlier deploy of the same
    // git tree computed it (.git/deployctl/roots), else "": an unchanged tree is asked
    // about without building its nodes. remember_root() records it with the tree's
    // figures (committed trees packaged without warnings only: a git tree id names its
    // files and contents exactly).
    std::string known_root() const;
    void remember_root(const std::string& root, const Figures& figures) const;

    // The content of a file of the manifest, by digest.
    common::Result<std::string> read(const std::string& digest) const;
    // The same, for the file at `path` of `size` bytes: read from the working tree when the
    // file there still holds that content (its SHA-256 is checked), else as above.
    common::Result<std::string> read(const std::string& digest, std::string_view path,
                                     std::uint64_t size) const;
    // The content of the file at `path` (through one symlink inside the tree), nullopt
    // when the tree has no such file.
    common::Result<std::optional<std::string>> read_path(const std::string& path) const;

  private:
    std::unique_ptr<Impl> m_impl;
};

// When a committed tree's files are listed: at once, or at the first load() (the caller
// reads deploy.toml and logs in to its hosts first; --dirty lists them at once).
enum class Walk { now, at_load };

// Errors: not a git repository, no commits yet, DIR missing (ErrorKind::usage).
common::Result<SourceTree> package_source(const std::filesystem::path& dir, Mode mode,
                                          Walk walk = Walk::now);

} // namespace cli::package
