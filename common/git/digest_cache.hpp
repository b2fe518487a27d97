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
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

struct stat;

namespace common::git {

class DigestCache {
  public:
    // A view into the cache: valid while the cache lives.
    struct Known {
        std::string_view digest;
        std::uint64_t size = 0;
    };
    DigestCache() = default; // keeps nothing
    explicit DigestCache(std::filesystem::path file);

    // Null when the key is not known; the pointer stays valid while the cache lives.
    const Known* find(std::string_view key);
    // find(git_key(oid)), the key made in a buffer the cache keeps (one lookup per file).
    const Known* find_git(std::string_view oid);
    void add(const std::string& key, std::string_view digest, std::uint64_t size);
    // Appends what was added (rewrites the file when it has grown past what is used).
    void save();

    static constexpr std::string_view k_git_prefix = "g:";
    static std::string git_key(std::string_view oid) {
        return std::string(k_git_prefix).append(oid);
    }
    static std::string file_key(const struct stat& st);

  private:
    // Looked up by string_view without a string made for each lookup.
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view key) const {
            return std::hash<std::string_view>{}(key);
        }
    };
    struct Loaded {
        Known known;
        bool used = false; // found by this run
    };
    struct Added {
        std::string digest;
        Known known; // views `digest` (a node's value does not move)
    };
    std::filesystem::path m_file;
    // The file as read: the loaded keys and digests are views into it (18,000 lines, no
    // string each).
    std::string m_text;
    std::unordered_map<std::string_view, Loaded, Hash> m_known;
    std::unordered_map<std::string, Added, Hash, std::equal_to<>> m_added;
    std::size_t m_lines = 0; // in the file as loaded
    std::size_t m_used = 0;  // of those, the keys this run found
    std::string m_key;       // find_git()'s
};

} // namespace common::git
