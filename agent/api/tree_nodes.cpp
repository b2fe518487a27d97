#include <agent/api/tree_nodes.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

namespace agent::api {

using common::ErrorKind;
using common::make_error;

void PendingNodes::expire(std::chrono::steady_clock::time_point now) {
    for (auto it = m_nodes.begin(); it != m_nodes.end();) {
        if (now < it->second.until) {
            ++it;
            continue;
        }
        m_bytes -= it->second.node.bytes.size();
        it = m_nodes.erase(it);
    }
    while (m_bytes > k_max_bytes && !m_nodes.empty()) {
        auto oldest = m_nodes.begin();
        for (auto it = m_nodes.begin(); it != m_nodes.end(); ++it)
            if (it->second.order < oldest->second.order)
                oldest = it;
        m_bytes -= oldest->second.node.bytes.size();
        m_nodes.erase(oldest);
    }
}

void PendingNodes::add(const common::TreeNode& node) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(m_mutex);
    auto [it, fresh] = m_nodes.try_emplace(node.digest);
    if (fresh) {
        it->second.node = node;
        m_bytes += node.bytes.size();
    }
    it->second.until = now + k_hold_time;
    it->second.order = m_next++;
    expire(now);
}

std::optional<common::TreeNode> PendingNodes::find(const std::string& digest) {
    std::lock_guard lock(m_mutex);
    auto it = m_nodes.find(digest);
    if (it == m_nodes.end())
        return std::nullopt;
    return it->second.node;
}

common::Result<common::TreeNode> load_node(PendingNodes& pending, const BlobStore& blobs,
                                           const std::string& digest) {
    if (auto held = pending.find(digest))
        return *held;
    if (!blobs.has(digest))
        return make_error(ErrorKind::not_found,
                          fmt::format("the tree node {} is not on this agent: send it with POST "
                                      "/v1/trees/missing before the deployment names its tree",
                                      digest));
    auto bytes = common::read_file(blobs.path(digest));
    if (!bytes)
        return bytes.error();
    auto node = common::parse_node(std::move(*bytes));
    if (!node || node->digest != digest)
        return make_error(ErrorKind::not_found,
                          fmt::format("the stored blob {} is not a tree node", digest));
    return node;
}

common::Result<TreeContents> read_tree(PendingNodes& pending, const BlobStore& blobs,
                                       const std::string& root) {
    TreeContents out;
    auto manifest = common::flatten_tree(root, [&](const std::string& digest) {
        out.nodes.push_back(digest);
        return load_node(pending, blobs, digest);
    });
    if (!manifest)
        return manifest.error();
    out.manifest = std::move(*manifest);
    return out;
}

} // namespace agent::api
