// The upload manifest as the agent reads it from POST /v1/apps/APP/deployments:
// bytes -> JSON -> common::manifest_from_json -> common::validate_manifest.
// Properties of an accepted manifest:
// - every path is a safe relative path (no "", ".", ".." component, not absolute,
//   no NUL or backslash) and, joined under a release directory, stays under it;
// - every path and symlink target is storable: valid UTF-8 without control characters
//   (common/storable_path.hpp);
// - no symlink, followed the way the kernel would once the tree is written,
//   leads out of the tree;
// - it survives manifest_to_json -> text -> manifest_from_json unchanged, with
//   the same digest.
// - built into Merkle nodes, it flattens back to the same entries.
// An input that is a JSON array of tree node entries is parsed as a node: an accepted one
// has only safe single-component names.
// An input that is a JSON array of two manifests also checks that two accepted
// manifests with different entries have different digests.

#include <common/manifest.hpp>
#include <common/storable_path.hpp>
#include <common/tree.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <tuple>

#include "check.hpp"
#include "tree_model.hpp"

namespace {

bool same_entry(const common::ManifestEntry& a, const common::ManifestEntry& b) {
    return std::tie(a.path, a.kind, a.digest, a.size, a.target) ==
           std::tie(b.path, b.kind, b.digest, b.size, b.target);
}

bool same_entries(std::vector<common::ManifestEntry> a, std::vector<common::ManifestEntry> b) {
    auto by_path = [](const auto& x, const auto& y) { return x.path < y.path; };
    std::sort(a.begin(), a.end(), by_path);
    std::sort(b.begin(), b.end(), by_path);
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), same_entry);
}

bool lexically_under(const std::filesystem::path& root, const std::string& relative) {
    const auto joined = (root / relative).lexically_normal();
    const auto rel = joined.lexically_relative(root);
    return !rel.empty() && *rel.begin() != ".." && rel != ".";
}

void check_accepted(const common::Manifest& manifest) {
    const std::filesystem::path root = "/srv/agent/apps/app/releases/v1";
    for (const auto& e : manifest.entries) {
        FUZZ_CHECK(common::is_safe_relative_path(e.path));
        FUZZ_CHECK(!e.path.empty() && e.path.front() != '/');
        FUZZ_CHECK(e.path.find('\0') == std::string::npos);
        FUZZ_CHECK(e.path != ".." && e.path.rfind("../", 0) != 0 &&
                   e.path.find("/../") == std::string::npos &&
                   (e.path.size() < 3 || e.path.substr(e.path.size() - 3) != "/.."));
        FUZZ_CHECK(lexically_under(root, e.path));
        FUZZ_CHECK(common::is_storable_path(e.path));
        FUZZ_CHECK(common::is_storable_path(e.target));
    }
    const fuzz::TreeModel tree(manifest);
    for (const auto& e : manifest.entries)
        if (e.kind == common::EntryKind::symlink)
            FUZZ_CHECK(tree.symlink_stays_inside(e.path));

    const std::string text = common::manifest_to_json(manifest).dump();
    auto again = common::manifest_from_json(nlohmann::json::parse(text));
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(common::validate_manifest(*again).ok());
    FUZZ_CHECK(same_entries(manifest.entries, again->entries));
    FUZZ_CHECK(again->digest() == manifest.digest());
    FUZZ_CHECK(again->total_bytes() == manifest.total_bytes());

    // As Merkle nodes (common/tree.hpp): each parses back to its digest, and the tree
    // flattens back to the same entries.
    const auto merkle = common::build_tree(manifest);
    for (const auto& [digest, node] : merkle.nodes) {
        auto parsed = common::parse_node(node.bytes);
        FUZZ_CHECK(parsed.ok());
        FUZZ_CHECK(parsed->digest == digest);
    }
    auto flat = common::flatten_tree(
        merkle.root,
        [&](const std::string& digest) -> common::Result<std::shared_ptr<const common::TreeNode>> {
            auto it = merkle.nodes.find(digest);
            FUZZ_CHECK(it != merkle.nodes.end());
            TRY_ASSIGN(auto node, common::parse_node(it->second.bytes));
            return std::make_shared<const common::TreeNode>(std::move(node));
        });
    FUZZ_CHECK(flat.ok());
    FUZZ_CHECK(same_entries(manifest.entries, flat->entries));
}

// What the agent does with the "manifest" member of a request body.
std::optional<common::Manifest> accept(const nlohmann::json& json) {
    auto manifest = common::manifest_from_json(json);
    if (!manifest)
        return std::nullopt;
    if (!common::validate_manifest(*manifest))
        return std::nullopt;
    check_accepted(*manifest);
    return std::move(*manifest);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto json = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded())
        return 0;
    if (json.is_array()) // as a tree node
        if (auto node = common::parse_node(std::string(reinterpret_cast<const char*>(data), size)))
            for (const auto& e : node->entries)
                FUZZ_CHECK(common::is_safe_relative_path(e.name) &&
                           e.name.find('/') == std::string::npos &&
                           common::is_storable_path(e.name));
    if (json.is_array() && json.size() == 2) {
        auto a = accept(json[0]);
        auto b = accept(json[1]);
        if (a && b && !same_entries(a->entries, b->entries))
            FUZZ_CHECK(a->digest() != b->digest());
        return 0;
    }
    accept(json);
    return 0;
}
