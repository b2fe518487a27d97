#pragma once
// The SHA-256 of each file packaged before, kept in the repository's git folder
// (.git/deployctl/digests for deployctl, the app's bare repository for a push to the
// agent), so that a deploy reads and hashes only what changed:
// a committed file by its git blob id (equal ids, equal contents), a working-tree file
// (--dirty) by device, inode, size and change times. A line per file, "KEY DIGEST SIZE";
// a line that does not parse is ignored, and a file that cannot be read or written only
// costs the hashing it would have saved.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

struct stat;

namespace common::git {

class DigestCache {
  public:
    struct Known {
        std::string digest;
        std::uint64_t size = 0;
    };
    DigestCache() = default; // keeps nothing
    explicit DigestCache(std::filesystem::path file);

    std::optional<Known> find(const std::string& key);
    void add(const std::string& key, const std::string& digest, std::uint64_t size);
    // Appends what was added (rewrites the file when it has grown past what is used).
    void save();

    static std::string git_key(const std::string& oid) { return "g:" + oid; }
    static std::string file_key(const struct stat& st);

  private:
    std::filesystem::path m_file;
    std::unordered_map<std::string, Known> m_known;
    std::unordered_map<std::string, Known> m_added;
    std::size_t m_lines = 0;                // in the file as loaded
    std::unordered_set<std::string> m_used; // of those, the keys this run found
};

} // namespace common::git
