#include <agent/api/tree_nodes.hpp>
#include <common/hash.hpp>
#include <common/tree.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "temp_dir.hpp"

namespace {

std::shared_ptr<const agent::api::TreeContents> contents(std::vector<std::string> nodes) {
    auto out = std::make_shared<agent::api::TreeContents>();
    out->nodes = std::move(nodes);
    out->blobs = {"blob-of-" + out->nodes.front()};
    return out;
}

} // namespace

TEST_CASE(
    "PendingNodes: the folders of a tree marked whole are whole within it, while it is kept") {
    agent::api::PendingNodes pending;
    const auto first = contents({"root1", "shared", "only1"});
    pending.keep_tree("root1", first);
    CHECK_FALSE(pending.whole_within("shared")); // kept, not yet found whole
    pending.mark_whole("root1", 7);
    auto shared = pending.whole_within("only1");
    REQUIRE(shared);
    CHECK(shared->tree == first);
    CHECK(shared->removals == 7);
    CHECK_FALSE(pending.whole_within("elsewhere"));

    // A later tree with a folder in common: that folder is now found within it.
    const auto second = contents({"root2", "shared"});
    pending.keep_tree("root2", second);
    pending.mark_whole("root2", 9);
    CHECK(pending.whole_within("shared")->tree == second);
    CHECK(pending.whole_within("shared")->removals == 9);
    CHECK(pending.whole_within("only1")->tree == first); // root1 is still kept

    // Once root1 is no longer kept (k_known_trees later), its own folders are let go.
    for (std::size_t i = 0; i < agent::api::PendingNodes::k_known_trees; ++i) {
        const auto root = "other" + std::to_string(i);
        pending.keep_tree(root, contents({root}));
        pending.mark_whole(root, 10);
    }
    CHECK_FALSE(pending.whole_within("only1"));
    CHECK_FALSE(pending.whole_within("root1"));
}

TEST_CASE("PendingNodes: blob sizes come only from trees found whole with their sizes checked") {
    agent::api::PendingNodes pending;
    auto sized = std::make_shared<agent::api::TreeContents>();
    sized->nodes = {"rootA"};
    sized->manifest.entries = {{"a.txt", common::EntryKind::file, "blobA", 11, {}},
                               {"link", common::EntryKind::symlink, {}, 0, "a.txt"}};
    auto unchecked = std::make_shared<agent::api::TreeContents>();
    unchecked->nodes = {"rootB"};
    unchecked->manifest.entries = {{"b.txt", common::EntryKind::file, "blobB", 22, {}}};
    pending.keep_tree("rootA", sized);
    pending.keep_tree("rootB", unchecked);
    CHECK(pending.whole_blob_sizes(3).sizes.empty()); // neither found whole yet
    pending.mark_whole("rootA", 3, true);             // a deployment checked its sizes
    pending.mark_whole("rootB", 3);                   // present, sizes as the client said
    const auto whole = pending.whole_blob_sizes(3);
    const auto& sizes = whole.sizes;
    CHECK(sizes.size() == 1); // no symlink, nothing of rootB
    CHECK(sizes.at("blobA") == 11);
    // A blob removed since (the store's count moved on): nothing is taken on trust.
    CHECK(pending.whole_blob_sizes(4).sizes.empty());
    // Found whole again later, by presence alone: its sizes stay checked.
    pending.mark_whole("rootA", 4);
    const auto again = pending.whole_blob_sizes(4);
    CHECK(again.sizes.at("blobA") == 11);
}

TEST_CASE("PendingNodes: a collection that removed none of a whole tree leaves it whole") {
    agent::api::PendingNodes pending;
    auto tree = [](std::string root, std::string blob) {
        auto out = std::make_shared<agent::api::TreeContents>();
        out->nodes = {root, root + "/folder"};
        out->blobs = {blob};
        out->manifest.entries = {{"a.txt", common::EntryKind::file, blob, 5, {}}};
        return out;
    };
    const auto kept = tree("rootK", "blobK");
    const auto old = tree("rootO", "blobO");
    const auto stale = tree("rootS", "blobS");
    pending.keep_tree("rootK", kept);
    pending.keep_tree("rootO", old);
    pending.keep_tree("rootS", stale);
    pending.mark_whole("rootK", 5, true);
    pending.mark_whole("rootO", 5);
    pending.mark_whole("rootS", 4); // found whole before an earlier collection
    using Stored = agent::BlobStore::Stored;

    // Collection 6 removed a blob of rootO (a pruned release's) and a node nobody keeps.
    pending.removed({Stored{"blobO", 5}, Stored{"unknown-node", 9}}, 6);
    CHECK(pending.whole_at("rootK") == 6);
    CHECK(pending.whole_within("rootK/folder")->removals == 6);
    CHECK(pending.whole_blob_sizes(6).sizes.at("blobK") == 5); // still checked
    CHECK(pending.whole_at("rootO") == 5);                     // looked at again by the next deploy
    CHECK(pending.whole_within("rootO/folder")->removals == 5);
    CHECK(pending.whole_at("rootS") == 4); // whole at 4 says nothing about collection 5

    // A node of the tree removed counts as much as a blob.
    pending.removed({Stored{"rootK/folder", 1}}, 7);
    CHECK(pending.whole_at("rootK") == 6);
    // A count that skipped one (another collection's hook came first): nothing moves.
    pending.mark_whole("rootK", 7);
    pending.removed({Stored{"elsewhere", 1}}, 9);
    CHECK(pending.whole_at("rootK") == 7);
}

TEST_CASE("read_tree: a deployment's root is read once, with its blob list and manifest digest") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    common::Manifest manifest;
    for (const char* path : {"b/two.txt", "a.txt", "b/c/three.txt", "same.txt"}) {
        common::ManifestEntry entry;
        entry.path = path;
        const std::string content = std::string(path).find("same") != std::string::npos
                                        ? std::string("a.txt")
                                        : std::string(path);
        entry.digest = common::sha256_hex(content);
        entry.size = content.size();
        REQUIRE(blobs.put(entry.digest, content));
        manifest.entries.push_back(entry);
    }
    const auto tree = common::build_tree(manifest);
    agent::api::PendingNodes pending;
    for (const auto& [digest, node] : tree.nodes)
        pending.add(std::make_shared<const common::TreeNode>(node));
    auto read = agent::api::read_tree(pending, blobs, tree.root);
    REQUIRE(read);
    CHECK((*read)->digest == manifest.digest());
    CHECK((*read)->blobs == manifest.blob_digests());
    CHECK((*read)->blobs.size() == 3);             // same.txt holds a.txt's content
    CHECK(pending.known_tree(tree.root) == *read); // kept: the create request reads it again
    // A folder of it (trees/missing) is not kept, and its digest not computed.
    for (const auto& [digest, node] : tree.nodes)
        if (digest != tree.root) {
            auto folder = agent::api::read_tree(pending, blobs, digest, false);
            REQUIRE(folder);
            CHECK((*folder)->digest.empty());
            CHECK(pending.known_tree(digest) == nullptr);
        }
}
