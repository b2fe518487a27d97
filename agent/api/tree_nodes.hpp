#pragma once
// The tree nodes (common/tree.hpp) a deploy in progress sent with POST /v1/trees/missing:
// held in memory until its deployment names the tree's root (or for an hour), since a node
// is stored only with a release whose whole tree is present (Engine::record_blobs). And
// the reading of a tree, from those and from the blob store where kept nodes are.

#include <agent/store/blobs.hpp>
#include <common/tree.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace agent::api {

class PendingNodes {
  public:
    static constexpr std::chrono::minutes k_hold_time{60};
    static constexpr std::size_t k_max_bytes = 256ull * 1024 * 1024; // the oldest go first

    void add(const common::TreeNode& node);
    std::optional<common::TreeNode> find(const std::string& digest);

    // The manifest digest (common::Manifest::digest) of a tree read before, by its root:
    // a deployment of the tree PRODUCTION was made from is answered "unchanged" without
    // reading the tree again. A pure function of the root, kept for the last 4,096 roots.
    void remember_tree(const std::string& root, const std::string& manifest_digest);
    std::optional<std::string> manifest_digest(const std::string& root);

  private:
    struct Held {
        common::TreeNode node;
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
};

// A node by digest: one a client sent, else a stored one (checked against its digest).
// ErrorKind::not_found when neither has it.
common::Result<common::TreeNode> load_node(PendingNodes& pending, const BlobStore& blobs,
                                           const std::string& digest);

// The manifest a tree stands for, and the digests of its nodes.
struct TreeContents {
    common::Manifest manifest;
    std::vector<std::string> nodes;
};
common::Result<TreeContents> read_tree(PendingNodes& pending, const BlobStore& blobs,
                                       const std::string& root);

} // namespace agent::api
