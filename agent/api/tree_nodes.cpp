#include <agent/api/tree_nodes.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <unordered_set>

namespace agent::api {

using common::ErrorKind;
using common::make_error;

namespace {

// What a held node costs in memory: its bytes, and its entries parsed.
std::size_t weight(const common::TreeNode& node) {
    std::size_t bytes = node.bytes.size() + node.digest.size();
    for (const auto& e : node.entries)
        bytes += sizeof e + e.name.size() + e.digest.size() + e.target.size();
    return bytes;
}

} // namespace

void PendingNodes::expire(std::chrono::steady_clock::time_point now) {
    // Oldest first: expired ones, then as many as the cap needs.
    while (!m_by_order.empty()) {
        auto oldest = m_nodes.find(m_by_order.begin()->second);
        if (now < oldest->second.until && m_bytes <= k_max_bytes)
            break;
        m_bytes -= weight(*oldest->second.node);
        m_by_order.erase(m_by_order.begin());
        m_nodes.erase(oldest);
    }
}

void PendingNodes::add(std::shared_ptr<const common::TreeNode> node) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(m_mutex);
    auto [it, fresh] = m_nodes.try_emplace(node->digest);
    if (fresh) {
        m_bytes += weight(*node);
        it->second.node = std::move(node);
    } else {
        m_by_order.erase(it->second.order);
    }
    it->second.until = now + k_hold_time;
    it->second.order = m_next++;
    m_by_order.emplace(it->second.order, it->first);
    expire(now);
}

std::shared_ptr<const common::TreeNode> PendingNodes::find(const std::string& digest) {
    std::lock_guard lock(m_mutex);
    auto it = m_nodes.find(digest);
    if (it == m_nodes.end())
        return nullptr;
    return it->second.node;
}

void PendingNodes::remember_tree(const std::string& root, const std::string& manifest_digest) {
    std::lock_guard lock(m_mutex);
    if (m_trees.size() >= 4096)
        m_trees.clear(); // the next deploy of each reads its tree again
    m_trees[root] = manifest_digest;
}

std::optional<std::string> PendingNodes::manifest_digest(const std::string& root) {
    std::lock_guard lock(m_mutex);
    auto it = m_trees.find(root);
    if (it == m_trees.end())
        return std::nullopt;
    return it->second;
}

std::deque<PendingNodes::Known>::iterator PendingNodes::find_known(const std::string& root) {
    return std::find_if(m_known.begin(), m_known.end(),
                        [&](const Known& known) { return known.root == root; });
}

std::shared_ptr<const TreeContents> PendingNodes::known_tree(const std::string& root) {
    std::lock_guard lock(m_mutex);
    auto it = find_known(root);
    if (it == m_known.end())
        return nullptr;
    auto known = std::move(*it);
    m_known.erase(it);
    m_known.push_front(std::move(known));
    return m_known.front().contents;
}

void PendingNodes::keep_tree(const std::string& root,
                             std::shared_ptr<const TreeContents> contents) {
    std::lock_guard lock(m_mutex);
    if (auto it = find_known(root); it != m_known.end())
        m_known.erase(it);
    m_known.push_front({root, std::move(contents), std::nullopt, false});
    if (m_known.size() > k_known_trees)
        m_known.pop_back();
}

void PendingNodes::mark_whole(const std::string& root, std::uint64_t removals, bool sizes_checked) {
    std::lock_guard lock(m_mutex);
    auto it = find_known(root);
    if (it == m_known.end())
        return;
    it->sizes_checked = it->sizes_checked || sizes_checked; // a blob's size never changes
    it->whole_at = removals;
    // Only the kept trees' nodes: one no longer kept is let go (and its memory with it).
    std::set<const TreeContents*> kept;
    for (const auto& known : m_known)
        kept.insert(known.contents.get());
    std::erase_if(m_whole_nodes,
                  [&](const auto& entry) { return !kept.count(entry.second.get()); });
    for (const auto& node : it->contents->nodes)
        m_whole_nodes[node] = it->contents;
}

void PendingNodes::removed(const std::vector<BlobStore::Stored>& removed, std::uint64_t removals) {
    if (removals == 0)
        return;
    std::vector<std::shared_ptr<const TreeContents>> candidates;
    {
        std::lock_guard lock(m_mutex);
        for (const auto& known : m_known)
            if (known.whole_at == removals - 1)
                candidates.push_back(known.contents);
    }
    if (candidates.empty())
        return;
    // Looked at outside the lock: a tree's contents never change.
    std::unordered_set<std::string_view> gone;
    gone.reserve(removed.size());
    for (const auto& blob : removed)
        gone.insert(blob.digest);
    auto untouched = [&](const TreeContents& tree) {
        auto any_gone = [&](const std::vector<std::string>& digests) {
            return std::any_of(digests.begin(), digests.end(),
                               [&](const std::string& d) { return gone.count(d) > 0; });
        };
        return !any_gone(tree.nodes) && !any_gone(tree.blobs);
    };
    std::erase_if(candidates, [&](const auto& tree) { return !untouched(*tree); });
    std::lock_guard lock(m_mutex); // their folders follow (whole_within)
    for (auto& known : m_known)
        if (known.whole_at == removals - 1 &&
            std::find(candidates.begin(), candidates.end(), known.contents) != candidates.end())
            known.whole_at = removals;
}

PendingNodes::BlobSizes PendingNodes::whole_blob_sizes(std::uint64_t removals) {
    BlobSizes out;
    {
        std::lock_guard lock(m_mutex);
        for (const auto& known : m_known)
            if (known.whole_at == removals && known.sizes_checked)
                out.trees.push_back(known.contents);
    }
    std::size_t count = 0;
    for (const auto& tree : out.trees)
        count += tree->manifest.entries.size();
    out.sizes.reserve(count);
    for (const auto& tree : out.trees)
        for (const auto& entry : tree->manifest.entries)
            if (entry.kind != common::EntryKind::symlink)
                out.sizes.emplace(entry.digest, entry.size);
    return out;
}

std::optional<PendingNodes::WholeWithin> PendingNodes::whole_within(const std::string& node) {
    std::lock_guard lock(m_mutex);
    auto it = m_whole_nodes.find(node);
    if (it == m_whole_nodes.end())
        return std::nullopt;
    for (const auto& known : m_known)
        if (known.contents == it->second && known.whole_at)
            return WholeWithin{known.contents, *known.whole_at};
    return std::nullopt;
}

std::optional<std::uint64_t> PendingNodes::whole_at(const std::string& root) {
    std::lock_guard lock(m_mutex);
    auto it = find_known(root);
    return it == m_known.end() ? std::nullopt : it->whole_at;
}

common::Result<std::shared_ptr<const common::TreeNode>>
load_node(PendingNodes& pending, const BlobStore& blobs, const std::string& digest) {
    if (auto held = pending.find(digest))
        return held;
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
    // Held like a sent one: the next deploy's tree reads its unchanged folders from memory.
    auto shared = std::make_shared<const common::TreeNode>(std::move(*node));
    pending.add(shared);
    return shared;
}

common::Result<std::shared_ptr<const TreeContents>>
read_tree(PendingNodes& pending, const BlobStore& blobs, const std::string& root, bool keep) {
    if (auto known = pending.known_tree(root))
        return known;
    auto out = std::make_shared<TreeContents>();
    auto manifest = common::flatten_tree(root, [&](const std::string& digest) {
        out->nodes.push_back(digest);
        return load_node(pending, blobs, digest);
    });
    if (!manifest)
        return manifest.error();
    out->manifest = std::move(*manifest);
    out->blobs = out->manifest.blob_digests();
    if (keep) { // a root (the digest of a folder's manifest is not asked for)
        out->digest = out->manifest.digest();
        pending.keep_tree(root, out);
    }
    return std::shared_ptr<const TreeContents>(std::move(out));
}

} // namespace agent::api
