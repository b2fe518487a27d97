#pragma once
// The tree nodes (common/tree.hpp) a deploy in progress sent with POST /v1/trees/missing:
// held in memory until its deployment names the tree's root (or for an hour), since a node
// is stored only with a release whose whole tree is present (Engine::record_blobs); stored
// nodes read from the blob store are held the same way (a node's digest is its content).
// And the reading of a tree, from those and from the blob store where kept nodes are.

#include <agent/store/blobs.hpp>
#include <common/tree.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace agent::api {

// The manifest a tree stands for, the digests of its nodes and of its blobs.
struct TreeContents {
    common::Manifest manifest;
    std::vector<std::string> nodes;
    std::vector<std::string> blobs; // manifest.blob_digests()
    std::string digest;             // manifest.digest(), of a tree read_tree() keeps
};

class PendingNodes {
  public:
    static constexpr std::chrono::minutes k_hold_time{60};
    static constexpr std::size_t k_max_bytes = 256ull * 1024 * 1024; // the oldest go first

    void add(std::shared_ptr<const common::TreeNode> node);
    // Null when not held.
    std::shared_ptr<const common::TreeNode> find(const std::string& digest);

    // The manifest digest (common::Manifest::digest) of a tree read before, by its root:
    // a deployment of the tree PRODUCTION was made from is answered "unchanged" without
    // reading the tree again. A pure function of the root, kept for the last 4,096 roots.
    void remember_tree(const std::string& root, const std::string& manifest_digest);
    std::optional<std::string> manifest_digest(const std::string& root);

    // Trees read before, by root. What a root stands for never changes, so the last
    // k_known_trees are kept read: a deploy asks about its root, then names it.
    static constexpr std::size_t k_known_trees = 4;
    std::shared_ptr<const TreeContents> known_tree(const std::string& root);
    void keep_tree(const std::string& root, std::shared_ptr<const TreeContents> contents);
    // Every node and blob of a kept tree was found stored when BlobStore::removals() said
    // `removals`: while it still says so, the tree is whole without looking at each.
    // Its folders' nodes are marked too (each subtree of a whole tree is whole).
    // `sizes_checked`: each file's size in the tree was found to be its stored blob's (a
    // deployment was created from it).
    void mark_whole(const std::string& root, std::uint64_t removals, bool sizes_checked = false);
    std::optional<std::uint64_t> whole_at(const std::string& root);
    // A collection removed `removed` and made BlobStore::removals() say `removals`: the kept
    // trees whole at the count before that have none of those nodes or blobs (the unchanged
    // trees of the releases kept, as the last prune dropped an older one) are whole at the
    // new count, with their folders, instead of being looked at blob by blob again.
    void removed(const std::vector<BlobStore::Stored>& removed, std::uint64_t removals);
    // A node of a tree marked whole (the next deploy's unchanged folders): that tree's
    // contents and when it was found whole (its whole_at), else nullopt. Only while that
    // tree is kept (k_known_trees) and known whole.
    struct WholeWithin {
        std::shared_ptr<const TreeContents> tree;
        std::uint64_t removals = 0;
    };
    std::optional<WholeWithin> whole_within(const std::string& node);
    // The size of each blob of the kept trees found whole, with their sizes checked, at
    // `removals` (with nothing removed since, each of them is stored, and of that size: a
    // blob never changes).
    // By digest: views into the trees' manifests, which it keeps alive (no copy of 18,000
    // digests per deployment).
    struct BlobSizes {
        std::vector<std::shared_ptr<const TreeContents>> trees;
        std::unordered_map<std::string_view, std::uint64_t> sizes;
    };
    BlobSizes whole_blob_sizes(std::uint64_t removals);

  private:
    struct Held {
        std::shared_ptr<const common::TreeNode> node;
        std::chrono::steady_clock::time_point until;
        std::uint64_t order = 0;
    };
    void expire(std::chrono::steady_clock::time_point now);

    std::mutex m_mutex;
    std::map<std::string, Held> m_nodes;
    std::map<std::uint64_t, std::string> m_by_order; // oldest first, for eviction
    std::size_t m_bytes = 0;                         // the bytes and parsed entries held, roughly
    std::uint64_t m_next = 0;
    std::map<std::string, std::string> m_trees; // root -> manifest digest
    struct Known {
        std::string root;
        std::shared_ptr<const TreeContents> contents;
        std::optional<std::uint64_t> whole_at;
        bool sizes_checked = false;
    };
    // Node -> the kept tree marked whole last that has it (its whole_at is the node's).
    std::map<std::string, std::shared_ptr<const TreeContents>> m_whole_nodes;
    std::deque<Known> m_known;                                       // the most recently used first
    std::deque<Known>::iterator find_known(const std::string& root); // under m_mutex
};

// A node by digest: one a client sent, else a stored one (checked against its digest).
// ErrorKind::not_found when neither has it.
common::Result<std::shared_ptr<const common::TreeNode>>
load_node(PendingNodes& pending, const BlobStore& blobs, const std::string& digest);

// The manifest a tree stands for: a tree kept is not read again; one read node by node is
// kept when `keep` (a deployment's root, not each of its folders).
common::Result<std::shared_ptr<const TreeContents>>
read_tree(PendingNodes& pending, const BlobStore& blobs, const std::string& root, bool keep = true);

} // namespace agent::api
