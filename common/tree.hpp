#pragma once
// The manifest as a Merkle tree: one node per directory, addressed by the SHA-256 of its
// bytes, so that two trees that share a folder share its node and an agent that has a node
// has everything below it (docs/api.md, "Uploading a tree"). The CLI builds the nodes of what it
// deploys and asks the agent which it lacks, level by level from the root; the agent stores
// the nodes of every release it keeps and flattens a tree back into the manifest it validates.
//
// A node's bytes are a JSON array of its entries, sorted by name (bytewise), each
//   ["name", "d", "<node digest>"]            a directory
//   ["name", "f"|"x", "<blob digest>", size]   a file, an executable
//   ["name", "l", "target"]                    a symlink
// written by nlohmann::json's dump(): the same tree always gives the same bytes.

#include <common/manifest.hpp>
#include <common/result.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace common {

struct TreeEntry {
    std::string name; // one path component
    enum class Kind { tree, file, executable, symlink } kind = Kind::file;
    std::string digest; // a node's (tree) or a blob's (file, executable)
    std::uint64_t size = 0;
    std::string target; // symlink
};

struct TreeNode {
    std::string digest; // sha256 of bytes
    std::string bytes;
    std::vector<TreeEntry> entries;
};

struct Tree {
    std::string root;                      // the root node's digest
    std::map<std::string, TreeNode> nodes; // every node, by digest
};

// The nodes of a manifest (one per directory, the root included; an empty
// manifest has one empty root node).
Tree build_tree(const Manifest& manifest);

inline constexpr std::size_t k_max_node_bytes = 16ull * 1024 * 1024;
inline constexpr std::size_t k_max_name_length = 255; // one path component
inline constexpr std::size_t k_max_tree_path_bytes = 64ull * 1024 * 1024;

// Parses and checks one node: a JSON array as above, names that are single safe path
// components, sorted and distinct, digests of 64 lower-case hex characters. Its digest is
// computed from the bytes (ErrorKind::bad_request for anything else; `fault`, when given,
// is set to unstorable_path for a name the store cannot keep, as validate_manifest() does).
Result<TreeNode> parse_node(std::string bytes, ManifestFault* fault = nullptr);

// The manifest a tree stands for, reading nodes through `node` (by digest, shared: a node
// held in memory is not copied; an error stops the walk; each distinct node is read once).
// At most k_max_manifest_entries files and as many folders, paths of k_max_path_length
// bytes and a depth of 256.
using NodeReader = std::function<Result<std::shared_ptr<const TreeNode>>(const std::string&)>;
Result<Manifest> flatten_tree(const std::string& root, const NodeReader& node);

} // namespace common
