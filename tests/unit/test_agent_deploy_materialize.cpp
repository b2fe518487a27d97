#include <agent/deploy/materialize.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/stat.h>
#include <thread>

#include "temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

// A manifest of FILES (path -> content; a content "-> T" is a symlink to T, a path ending in
// '*' an executable), the blobs put in `blobs`.
common::Manifest tree_of(const std::map<std::string, std::string>& files, agent::BlobStore& blobs) {
    common::Manifest manifest;
    for (const auto& [name, content] : files) {
        common::ManifestEntry entry;
        entry.path = name;
        if (content.rfind("-> ", 0) == 0) {
            entry.kind = common::EntryKind::symlink;
            entry.target = content.substr(3);
        } else {
            if (entry.path.back() == '*') {
                entry.path.pop_back();
                entry.kind = common::EntryKind::executable;
            }
            entry.digest = common::sha256_hex(content);
            entry.size = content.size();
            REQUIRE(blobs.put(entry.digest, content));
        }
        manifest.entries.push_back(entry);
    }
    return manifest;
}

// Every entry under `root`: its type, mode and content (a symlink's target).
std::map<std::string, std::string> listing(const fs::path& root) {
    std::map<std::string, std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        struct stat st {};
        REQUIRE(::lstat(it->path().c_str(), &st) == 0);
        std::ostringstream line;
        line << std::oct << (st.st_mode & 07777) << ' ';
        if (S_ISLNK(st.st_mode)) {
            line << "link " << fs::read_symlink(it->path()).string();
        } else if (S_ISDIR(st.st_mode)) {
            line << "dir";
        } else {
            std::ifstream in(it->path(), std::ios::binary);
            line << "file " << in.rdbuf();
        }
        out[it->path().lexically_relative(root).string()] = line.str();
    }
    return out;
}

} // namespace

TEST_CASE("materialize from a spare tree gives the tree written from the store") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    const auto releases = dir.path() / "releases";
    fs::create_directories(releases);
    const auto before = tree_of({{"app.js", "console.log(1)\n"},
                                 {"kept/deep/same.txt", "same\n"},
                                 {"changed.txt", "old\n"},
                                 {"mode", "#!/bin/sh\n"},
                                 {"gone/only/file", "x"},
                                 {"was-file", "a file\n"},
                                 {"was-dir/inner", "in\n"},
                                 {"link", "-> app.js"},
                                 {"moved-link", "-> kept"}},
                                blobs);
    const auto after = tree_of({{"app.js", "console.log(1)\n"},
                                {"kept/deep/same.txt", "same\n"},
                                {"changed.txt", "new\n"},
                                {"mode*", "#!/bin/sh\n"}, // same content, now executable
                                {"was-file/now-a-folder", "f\n"},
                                {"was-dir", "now a file\n"},
                                {"new/deeper/added.txt", "added\n"},
                                {"link", "-> app.js"},
                                {"moved-link", "-> changed.txt"}},
                               blobs);
    // The spare: `before` as materialize writes it.
    std::optional<agent::SpareTree> spare;
    const auto spare_dir = agent::spare_tree_dir(releases);
    CHECK(spare_dir.filename().string().rfind(".tmp-", 0) == 0); // removed at the agent's start
    REQUIRE(agent::materialize(before, blobs, spare_dir));
    spare = agent::SpareTree{spare_dir, before};

    agent::Materialized done;
    REQUIRE(agent::materialize(after, blobs, releases / "v2", &spare, &done));
    CHECK_FALSE(spare.has_value()); // used up
    CHECK_FALSE(fs::exists(spare_dir));
    CHECK(done.from_spare);
    // changed.txt, mode, was-file/now-a-folder, was-dir, new/deeper/added.txt, moved-link
    CHECK(done.written == 6);
    CHECK(done.kept == 3);
    CHECK(done.removed == 3); // gone/only/file, was-file (a folder's name now), was-dir/inner
    REQUIRE(agent::materialize(after, blobs, releases / "fresh"));
    CHECK(listing(releases / "v2") == listing(releases / "fresh"));
    CHECK_FALSE(fs::exists(releases / "v2" / "gone"));

    SUBCASE("a spare that is not what its manifest says: written from the store instead") {
        REQUIRE(agent::materialize(before, blobs, spare_dir));
        fs::remove(spare_dir / "gone" / "only" / "file"); // cannot be removed again
        spare = agent::SpareTree{spare_dir, before};
        agent::Materialized again;
        REQUIRE(agent::materialize(after, blobs, releases / "v3", &spare, &again));
        CHECK_FALSE(again.from_spare);
        CHECK(again.written == after.entries.size());
        CHECK(listing(releases / "v3") == listing(releases / "fresh"));
        CHECK_FALSE(fs::exists(spare_dir));
        CHECK_FALSE(fs::exists(agent::materialize_temp_dir(releases / "v3")));
    }
    SUBCASE("a spare whose folder is gone: written from the store") {
        spare = agent::SpareTree{spare_dir, before};
        agent::Materialized again;
        REQUIRE(agent::materialize(after, blobs, releases / "v3", &spare, &again));
        CHECK_FALSE(again.from_spare);
        CHECK(listing(releases / "v3") == listing(releases / "fresh"));
    }
}

TEST_CASE("SpareWriter: writes the spare on its own thread; a cancel leaves no spare") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    const auto releases = dir.path() / "releases";
    fs::create_directories(releases);
    std::map<std::string, std::string> files;
    for (int i = 0; i < 3000; ++i)
        files["pkg" + std::to_string(i / 30) + "/f" + std::to_string(i) + ".js"] =
            "module " + std::to_string(i) + "\n";
    const auto tree = tree_of(files, blobs);
    const auto spare_dir = agent::spare_tree_dir(releases);
    REQUIRE(agent::materialize(tree, blobs, releases / "fresh"));

    SUBCASE("waited for: the spare is whole, and the next release is made from it") {
        agent::SpareWriter writer(tree, blobs, spare_dir, std::nullopt);
        auto outcome = writer.finish(false);
        REQUIRE(outcome.spare.has_value());
        CHECK_FALSE(outcome.cancelled);
        CHECK(outcome.error.empty());
        CHECK(outcome.spare->dir == spare_dir);
        CHECK(listing(spare_dir) == listing(releases / "fresh"));
        agent::Materialized done;
        REQUIRE(agent::materialize(tree, blobs, releases / "v2", &outcome.spare, &done));
        CHECK(done.from_spare);
        CHECK(done.written == 0);
        CHECK(listing(releases / "v2") == listing(releases / "fresh"));
    }
    SUBCASE("half written or more, it says so, and finishing it writes the rest") {
        agent::SpareWriter writer(tree, blobs, spare_dir, std::nullopt);
        // Its threads run at idle priority: on a machine whose cores are all busy (a build, the
        // other test suites) they get a few thousandths of a core, and 1,500 files take a while.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        while (!writer.mostly_written() && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        REQUIRE(writer.mostly_written());
        auto outcome = writer.finish(false);
        REQUIRE(outcome.spare.has_value());
        CHECK_FALSE(outcome.cancelled);
        CHECK(listing(spare_dir) == listing(releases / "fresh"));
    }
    SUBCASE("waited for at once: its other threads write folders too") {
        agent::SpareWriter writer(tree, blobs, spare_dir, std::nullopt);
        auto outcome = writer.finish(false);
        REQUIRE(outcome.spare.has_value());
        CHECK(outcome.runs_helped > 0); // of 100 folders, while the writer's thread writes too
        CHECK(listing(spare_dir) == listing(releases / "fresh"));
    }
    SUBCASE("from the last spare: changed by the difference") {
        REQUIRE(agent::materialize(tree_of({{"old.txt", "old\n"}}, blobs), blobs, spare_dir));
        agent::SpareWriter writer(
            tree, blobs, spare_dir,
            agent::SpareTree{spare_dir, tree_of({{"old.txt", "old\n"}}, blobs)});
        auto outcome = writer.finish(false);
        REQUIRE(outcome.spare.has_value());
        CHECK(listing(spare_dir) == listing(releases / "fresh"));
    }
    SUBCASE("cancelled before it is whole: no spare, no error, and the next write succeeds") {
        std::optional<agent::SpareWriter> writer;
        writer.emplace(tree, blobs, spare_dir, std::nullopt);
        auto outcome = writer->finish(true); // 3,000 files at idle priority: not done yet
        CHECK(outcome.cancelled);
        CHECK_FALSE(outcome.spare.has_value());
        CHECK(outcome.error.empty());
        CHECK_FALSE(fs::exists(spare_dir)); // the half-written tree is under its temporary name
        CHECK(fs::exists(agent::materialize_temp_dir(spare_dir)));
        writer.reset();
        agent::SpareWriter again(tree, blobs, spare_dir, std::nullopt);
        auto second = again.finish(false);
        REQUIRE(second.spare.has_value());
        CHECK(listing(spare_dir) == listing(releases / "fresh"));
        CHECK_FALSE(fs::exists(agent::materialize_temp_dir(spare_dir)));
    }
    SUBCASE("a blob missing from the store: an error, no spare") {
        auto broken = tree;
        broken.entries[10].digest = common::sha256_hex("not stored");
        agent::SpareWriter writer(broken, blobs, spare_dir, std::nullopt);
        auto outcome = writer.finish(false);
        CHECK_FALSE(outcome.spare.has_value());
        CHECK_FALSE(outcome.cancelled);
        CHECK_FALSE(outcome.error.empty());
    }
    SUBCASE("destroyed while writing: cancelled and joined") {
        { agent::SpareWriter writer(tree, blobs, spare_dir, std::nullopt); }
        CHECK_FALSE(fs::exists(spare_dir));
    }
}
