#include <agent/api/tree_nodes.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>

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
