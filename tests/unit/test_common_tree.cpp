#include <common/hash.hpp>
#include <common/tree.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace {

common::ManifestEntry file(std::string path, std::string content,
                           common::EntryKind kind = common::EntryKind::file) {
    return {std::move(path), kind, common::sha256_hex(content), content.size(), {}};
}

common::Manifest sample() {
    common::Manifest m;
    m.entries = {file("VERSION", "1\n"),
                 file("lib/a/b/deep.txt", "deep\n"),
                 file("lib/a/run.sh", "#!/bin/sh\n", common::EntryKind::executable),
                 file("lib/z.txt", "z\n"),
                 {"lib/link", common::EntryKind::symlink, {}, 0, "a/b/deep.txt"}};
    return m;
}

// Reads nodes from a built tree, counting the reads.
auto reader(const common::Tree& tree, int* reads = nullptr) {
    return
        [&tree, reads](
            const std::string& digest) -> common::Result<std::shared_ptr<const common::TreeNode>> {
            if (reads)
                ++*reads;
            auto it = tree.nodes.find(digest);
            if (it == tree.nodes.end())
                return common::make_error(common::ErrorKind::not_found, "no node " + digest);
            TRY_ASSIGN(auto node, common::parse_node(it->second.bytes));
            return std::make_shared<const common::TreeNode>(std::move(node));
        };
}

std::vector<std::string> paths(const common::Manifest& m) {
    std::vector<std::string> out;
    for (const auto& e : m.entries)
        out.push_back(e.path + " " + e.digest + " " + std::to_string(e.size) + " " + e.target +
                      " " + std::string(common::to_string(e.kind)));
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace

TEST_CASE("tree: a manifest built into nodes flattens back to itself") {
    const auto manifest = sample();
    const auto tree = common::build_tree(manifest);
    CHECK(tree.nodes.size() == 4); // ., lib, lib/a, lib/a/b
    CHECK(tree.nodes.count(tree.root) == 1);
    for (const auto& [digest, node] : tree.nodes)
        CHECK(digest == common::sha256_hex(node.bytes));
    auto flat = common::flatten_tree(tree.root, reader(tree));
    REQUIRE(flat);
    CHECK(paths(*flat) == paths(manifest));
}

TEST_CASE("tree: equal trees give equal nodes, whatever the manifest's order") {
    auto manifest = sample();
    const auto tree = common::build_tree(manifest);
    std::reverse(manifest.entries.begin(), manifest.entries.end());
    CHECK(common::build_tree(manifest).root == tree.root);
    // A one-file change changes the nodes on its path only.
    auto changed = sample();
    changed.entries[1] = file("lib/a/b/deep.txt", "deeper\n");
    const auto other = common::build_tree(changed);
    CHECK(other.root != tree.root);
    std::size_t shared = 0;
    for (const auto& [digest, node] : other.nodes)
        shared += tree.nodes.count(digest);
    CHECK(shared == 0); // ., lib, lib/a, lib/a/b: all on the path
    changed.entries[1] = file("lib/a/b/deep.txt", "deep\n");
    changed.entries[0] = file("VERSION", "2\n");
    const auto root_only = common::build_tree(changed);
    shared = 0;
    for (const auto& [digest, node] : root_only.nodes)
        shared += tree.nodes.count(digest);
    CHECK(shared == 3); // lib and below are the same nodes
}

TEST_CASE("tree: nodes that are not canonical or safe are refused") {
    const auto d = common::sha256_hex("x");
    auto refused = [](std::string bytes) { return !common::parse_node(std::move(bytes)); };
    CHECK(refused("{}"));
    CHECK(refused("not json"));
    CHECK(refused(fmt::format(R"([["../x","f","{}",1]])", d)));
    CHECK(refused(fmt::format(R"([["a/b","f","{}",1]])", d)));
    CHECK(refused(fmt::format(R"([[".","d","{}"]])", d)));
    CHECK(refused(fmt::format(R"([["a\nb","f","{}",1]])", d)));
    CHECK(refused(fmt::format(R"([["b","f","{}",1],["a","f","{}",1]])", d, d))); // unsorted
    CHECK(refused(fmt::format(R"([["a","f","{}",1],["a","x","{}",1]])", d, d))); // twice
    CHECK(refused(R"([["a","f","notadigest",1]])"));
    CHECK(refused(fmt::format(R"([["a","f","{}",-1]])", d)));
    CHECK(refused(fmt::format(R"([["a","q","{}",1]])", d)));
    CHECK(refused(fmt::format(R"([["a","d","{}",1]])", d)));
    CHECK(refused(std::string(common::k_max_node_bytes + 1, ' ')));
    auto ok = common::parse_node(fmt::format(R"([["a","l","../b"],["b","x","{}",7]])", d));
    REQUIRE(ok);
    CHECK(ok->entries.size() == 2);
    CHECK(ok->entries[1].size == 7);
}

TEST_CASE("tree: a name or symlink target the store cannot keep is told apart") {
    const auto d = common::sha256_hex("x");
    auto fault_of = [](std::string bytes) {
        auto fault = common::ManifestFault::malformed;
        auto node = common::parse_node(std::move(bytes), &fault);
        REQUIRE_FALSE(node);
        return std::pair{fault, node.error().message};
    };
    auto [newline, said] = fault_of(fmt::format(R"([["a\nb","f","{}",1]])", d));
    CHECK(newline == common::ManifestFault::unstorable_path);
    CHECK(said.find(R"("a\nb" contains a newline (U+000A) at byte 1)") != std::string::npos);
    CHECK(fault_of(fmt::format(R"([["x\u0085","f","{}",1]])", d)).first ==
          common::ManifestFault::unstorable_path);
    auto [target, target_said] = fault_of(R"([["l","l","a\u001b[31m"]])");
    CHECK(target == common::ManifestFault::unstorable_path);
    CHECK(target_said.find(R"(target "a\x1b[31m")") != std::string::npos);
    // Names that are no single component are malformed, not unstorable.
    CHECK(fault_of(fmt::format(R"([["a/b","f","{}",1]])", d)).first ==
          common::ManifestFault::malformed);
    CHECK(fault_of(fmt::format(R"([["..","d","{}"]])", d)).first ==
          common::ManifestFault::malformed);
}

TEST_CASE("tree: a node named by many folders cannot blow up the flattening") {
    // 1000 folders naming one node of 1000 folders naming one empty node: a million
    // folders from three small nodes. The walk reads each node once and stops at the
    // folder limit.
    common::Tree tree;
    auto add = [&](std::string bytes) {
        auto node = common::parse_node(std::move(bytes));
        REQUIRE(node);
        tree.nodes[node->digest] = *node;
        return node->digest;
    };
    const auto empty = add("[]");
    auto many = [](const std::string& child) {
        std::string bytes = "[";
        for (int i = 0; i < 1000; ++i)
            bytes += fmt::format(R"({}["d{:04}","d","{}"])", i ? "," : "", i, child);
        return bytes + "]";
    };
    const auto middle = add(many(empty));
    tree.root = add(many(middle));
    int reads = 0;
    auto flat = common::flatten_tree(tree.root, reader(tree, &reads));
    REQUIRE_FALSE(flat);
    CHECK(flat.error().message.find("more than") != std::string::npos);
    CHECK(reads == 3);
}

TEST_CASE("tree: long names, targets and paths are refused") {
    const auto d = common::sha256_hex("x");
    CHECK_FALSE(
        common::parse_node(fmt::format(R"([["{}","f","{}",1]])", std::string(256, 'a'), d)));
    CHECK(common::parse_node(fmt::format(R"([["{}","f","{}",1]])", std::string(255, 'a'), d)));
    CHECK_FALSE(common::parse_node(fmt::format(R"([["l","l","{}"]])", std::string(4097, 'a'))));
    // 20 folders of 250 bytes: a path of 5,000 bytes.
    common::Manifest deep;
    std::string path;
    for (int i = 0; i < 20; ++i)
        path += std::string(250, static_cast<char>('a' + i)) + "/";
    deep.entries = {file(path + "f", "x")};
    const auto tree = common::build_tree(deep);
    auto flat = common::flatten_tree(tree.root, reader(tree));
    REQUIRE_FALSE(flat);
    CHECK(flat.error().message.find("longer than 4096") != std::string::npos);
}

TEST_CASE("tree: a missing node stops the walk with its error") {
    const auto tree = common::build_tree(sample());
    auto partial = tree;
    for (auto it = partial.nodes.begin(); it != partial.nodes.end(); ++it)
        if (it->first != partial.root) {
            partial.nodes.erase(it);
            break;
        }
    auto flat = common::flatten_tree(partial.root, reader(partial));
    REQUIRE_FALSE(flat);
    CHECK(flat.error().kind == common::ErrorKind::not_found);
    CHECK_FALSE(common::flatten_tree("nope", reader(tree)));
}

TEST_CASE("tree: a node's bytes are nlohmann::json's dump() of its entries, byte for byte") {
    // The node format is dump()'s (common/tree.hpp): every deployctl and agent must write
    // the same bytes for the same folder, or trees that are equal would not share nodes.
    common::Manifest m;
    m.entries = {file("plain.txt", "p"),
                 file("quote\"back\\slash", "q"),
                 file("tab\tnew\nline\rcr\bbs\fff\x01\x1f\x7f", "c"),
                 file("ünïcödé-名前-🙂", "u", common::EntryKind::executable),
                 file("big", std::string(3, 'b')),
                 {"dir/link \"x\"", common::EntryKind::symlink, {}, 0, "../t\\a\"r\x02get"}};
    m.entries[4].size = 18446744073709551615ull; // the largest size, as digits
    const auto tree = common::build_tree(m);
    REQUIRE(tree.nodes.size() == 2);
    for (const auto& [digest, node] : tree.nodes) {
        auto expected = nlohmann::json::array();
        for (const auto& e : node.entries) {
            static const char* codes[] = {"d", "f", "x", "l"};
            auto j = nlohmann::json::array({e.name, codes[static_cast<int>(e.kind)]});
            if (e.kind == common::TreeEntry::Kind::symlink) {
                j.push_back(e.target);
            } else {
                j.push_back(e.digest);
                if (e.kind != common::TreeEntry::Kind::tree)
                    j.push_back(e.size);
            }
            expected.push_back(j);
        }
        CHECK(node.bytes == expected.dump());
        CHECK(digest == common::sha256_hex(node.bytes));
    }
}
