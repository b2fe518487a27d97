#include <agent/store/blobs.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace {

void write_file(const std::filesystem::path& path, const std::string& content) {
    std::ofstream out(path, std::ios::binary);
    out << content;
}

std::size_t count_files(const std::filesystem::path& dir) {
    std::size_t n = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
        if (entry.is_regular_file())
            ++n;
    return n;
}

} // namespace

TEST_CASE("BlobStore::put stores content under its digest") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    const std::string content = "hello blob\n";
    const auto digest = common::sha256_hex(content);

    CHECK_FALSE(blobs.has(digest));
    REQUIRE(blobs.put(digest, content).ok());
    CHECK(blobs.has(digest));
    CHECK(blobs.path(digest) == dir.path() / "blobs" / digest.substr(0, 2) / digest);
    std::ifstream in(blobs.path(digest), std::ios::binary);
    CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == content);

    SUBCASE("putting it again is fine") {
        CHECK(blobs.put(digest, content).ok());
    }
}

TEST_CASE("BlobStore::stored_sizes: each digest's stored size, nothing where none is stored") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    const std::vector<std::string> contents{"a", "bb", std::string(70000, 'c')};
    std::vector<std::string> digests;
    for (const auto& content : contents) {
        digests.push_back(common::sha256_hex(content));
        REQUIRE(blobs.put(digests.back(), content).ok());
    }
    // Long enough to be looked at by several threads: the stored ones far apart, among
    // absent digests, a name that is no digest and a folder where a blob would be.
    std::vector<std::string> asked;
    for (int i = 0; i < 9000; ++i)
        asked.push_back(common::sha256_hex("absent " + std::to_string(i)));
    asked[0] = digests[0];
    asked[4500] = digests[1];
    asked[8999] = digests[2];
    asked[10] = "../../etc/passwd";
    std::filesystem::create_directories(blobs.path(asked[20]));
    const auto sizes = blobs.stored_sizes({asked.begin(), asked.end()});
    REQUIRE(sizes.size() == asked.size());
    CHECK(sizes[0] == 1);
    CHECK(sizes[4500] == 2);
    CHECK(sizes[8999] == 70000);
    std::size_t found = 0;
    for (const auto& size : sizes)
        found += size.has_value();
    CHECK(found == 3); // not the name, not the folder, none of the absent ones
    CHECK(blobs.stored_sizes({}).empty());
    // A few: looked at on this thread.
    const std::string content = "evil payload\n";
    const auto digest = common::sha256_hex(content);
    CHECK(blobs.stored_sizes({digest, "../../etc/passwd"}) ==
          std::vector<std::optional<std::uint64_t>>{std::nullopt, std::nullopt});
    REQUIRE(blobs.put(digest, content).ok());
    CHECK(blobs.stored_sizes({digest}) == std::vector<std::optional<std::uint64_t>>{13});
}

TEST_CASE("BlobStore::put rejects content that does not hash to the digest") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    const auto digest = common::sha256_hex("the real content");
    auto stored = blobs.put(digest, "something else");
    REQUIRE_FALSE(stored.ok());
    CHECK(stored.error().kind == common::ErrorKind::bad_request);
    CHECK_FALSE(blobs.has(digest));
    CHECK_FALSE(std::filesystem::exists(blobs.path(digest)));
}

TEST_CASE("BlobStore rejects names that are not sha256 digests") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    for (const std::string& name :
         std::vector<std::string>{"../../etc/passwd", "", "abc", std::string(64, 'A'),
                                  std::string(63, 'a') + "/", std::string(64, 'g')}) {
        CAPTURE(name);
        CHECK_FALSE(blobs.has(name));
        auto stored = blobs.put(name, "x");
        REQUIRE_FALSE(stored.ok());
        CHECK(stored.error().kind == common::ErrorKind::bad_request);
        const auto temp = blobs.temp_path();
        write_file(temp, "x");
        CHECK_FALSE(blobs.adopt(name, temp).ok());
        CHECK_FALSE(std::filesystem::exists(temp));
    }
    CHECK(count_files(dir.path()) == 0);
}

TEST_CASE("BlobStore::adopt moves a verified temporary file into place") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    const std::string content(100000, 'z');
    const auto digest = common::sha256_hex(content);
    const auto temp = blobs.temp_path();
    CHECK(temp.parent_path().parent_path() == dir.path() / "blobs");
    CHECK(blobs.temp_path() != temp);
    write_file(temp, content);

    SUBCASE("matching digest") {
        REQUIRE(blobs.adopt(digest, temp).ok());
        CHECK(blobs.has(digest));
        CHECK_FALSE(std::filesystem::exists(temp));
        CHECK(std::filesystem::file_size(blobs.path(digest)) == content.size());
    }
    SUBCASE("digest mismatch: rejected, temp removed, nothing stored") {
        const auto other = common::sha256_hex("other");
        auto adopted = blobs.adopt(other, temp);
        REQUIRE_FALSE(adopted.ok());
        CHECK(adopted.error().kind == common::ErrorKind::bad_request);
        CHECK(adopted.error().message.find(digest) != std::string::npos);
        CHECK_FALSE(blobs.has(other));
        CHECK_FALSE(std::filesystem::exists(temp));
        CHECK(count_files(dir.path()) == 0);
    }
    SUBCASE("already stored: the temporary file is dropped") {
        REQUIRE(blobs.put(digest, content).ok());
        REQUIRE(blobs.adopt(digest, temp).ok());
        CHECK_FALSE(std::filesystem::exists(temp));
        CHECK(count_files(dir.path()) == 1);
    }
}

TEST_CASE("remove_stale_uploads clears half-written uploads and keeps blobs") {
    test::TempDir dir;
    agent::BlobStore store(dir.path() / "blobs");
    const std::string data = "kept";
    REQUIRE(store.put(common::sha256_hex(data), data).ok());
    const auto partial = store.temp_path();
    std::ofstream(partial) << "half an upload";
    REQUIRE(std::filesystem::exists(partial));
    CHECK(store.remove_stale_uploads() == 1);
    CHECK_FALSE(std::filesystem::exists(partial));
    CHECK(store.has(common::sha256_hex(data)));
    CHECK(store.remove_stale_uploads() == 0);
}

TEST_CASE("BlobStore::collect removes what is neither used nor pinned") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    const std::string used = "used by a release\n";
    const std::string pinned = "uploaded for a deploy in progress\n";
    const std::string unused = "used by nothing\n";
    for (const auto* content : {&used, &pinned, &unused})
        REQUIRE(blobs.put(common::sha256_hex(*content), *content).ok());
    // An upload in progress (tmp/) is not a blob.
    write_file(blobs.temp_path(), "half an upload");
    const auto d_used = common::sha256_hex(used);
    const auto d_pinned = common::sha256_hex(pinned);
    const auto d_unused = common::sha256_hex(unused);
    REQUIRE(blobs.list().size() == 3);
    blobs.pin({d_pinned});

    const auto removals = blobs.removals();
    // What each collection that removed something removed, as the hook was told.
    std::vector<std::pair<std::vector<std::string>, std::uint64_t>> told;
    blobs.on_removed([&](const std::vector<agent::BlobStore::Stored>& removed, std::uint64_t n) {
        std::vector<std::string> digests;
        for (const auto& blob : removed)
            digests.push_back(blob.digest);
        told.emplace_back(digests, n);
    });

    SUBCASE("a dry run lists it and removes nothing") {
        auto would = blobs.collect({d_used}, true);
        CHECK(told.empty());
        REQUIRE(would.size() == 1);
        CHECK(would[0].digest == d_unused);
        CHECK(would[0].bytes == unused.size());
        CHECK(blobs.has(d_unused));
        CHECK(blobs.removals() == removals); // what was whole stays whole
    }
    SUBCASE("a collection removes it, keeps the used, the pinned and the upload") {
        auto removed = blobs.collect({d_used}, false);
        REQUIRE(removed.size() == 1);
        CHECK(removed[0].digest == d_unused);
        CHECK_FALSE(blobs.has(d_unused));
        CHECK(blobs.has(d_used));
        CHECK(blobs.has(d_pinned));
        CHECK(count_files(dir.path() / "blobs" / "tmp") == 1);
        // Counted: a tree known whole before must be looked at again.
        CHECK(blobs.removals() == removals + 1);
        CHECK(blobs.collect({d_used}, false).empty());
        CHECK(blobs.removals() == removals + 1); // nothing removed, nothing counted
        // The hook heard of the one collection that removed a blob, with its count.
        REQUIRE(told.size() == 1);
        CHECK(told[0].first == std::vector<std::string>{d_unused});
        CHECK(told[0].second == removals + 1);
    }
    SUBCASE("unpinned, it goes too") {
        blobs.unpin({d_pinned});
        auto removed = blobs.collect({d_used}, false);
        CHECK(removed.size() == 2);
        CHECK_FALSE(blobs.has(d_pinned));
        CHECK(blobs.has(d_used));
    }
    SUBCASE("pins are by digest: pinned again it stays; a string that is no digest pins nothing") {
        blobs.pin({d_pinned, d_unused, "not a digest", std::string(64, 'G')});
        blobs.unpin({"not a digest"});
        CHECK(blobs.collect({d_used}, false).empty());
        blobs.unpin({d_unused});
        auto removed = blobs.collect({d_used}, false);
        REQUIRE(removed.size() == 1);
        CHECK(removed[0].digest == d_unused);
        CHECK(blobs.has(d_pinned));
    }
}

TEST_CASE("BlobStore: an upload's blobs wait in files without a name, linked into place once "
          "durable") {
    test::TempDir dir;
    agent::BlobStore blobs(dir.path() / "blobs");
    auto write = [&](const std::string& content) {
        auto written = blobs.write_temp(common::sha256_hex(content), content);
        REQUIRE(written.ok());
        return std::move(*written);
    };
    const auto tmp = dir.path() / "blobs" / "tmp";
    // (ext4, xfs, btrfs or tmpfs hold the test's temporary folder on the machines this runs
    // on; elsewhere the store uses named files, which the last subcase covers.)
    if (!blobs.makes_unnamed()) {
        MESSAGE("no files without a name on this file system: " << tmp.string());
        return;
    }

    SUBCASE("a few (an fsync each) and many (one syncfs): each stored whole, nothing named") {
        for (std::size_t n : {3u, 100u}) {
            std::vector<agent::BlobStore::Written> written;
            std::vector<std::string> contents;
            for (std::size_t i = 0; i < n; ++i) {
                contents.push_back("blob " + std::to_string(n) + "/" + std::to_string(i) + "\n");
                written.push_back(write(contents.back()));
                CHECK(written.back().temp_file.empty());
                CHECK(written.back().fd.get() >= 0);
            }
            CHECK(count_files(tmp) == 0); // not one folder entry made for them
            REQUIRE(blobs.adopt_verified(written).ok());
            for (const auto& content : contents) {
                const auto digest = common::sha256_hex(content);
                REQUIRE(blobs.has(digest));
                std::ifstream in(blobs.path(digest), std::ios::binary);
                CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == content);
            }
        }
    }
    SUBCASE("linked through /proc/self/fd, as a process without CAP_DAC_READ_SEARCH does") {
        blobs.link_through_proc();
        const std::string content = "linked through /proc\n";
        std::vector<agent::BlobStore::Written> written;
        written.push_back(write(content));
        REQUIRE(written[0].fd.get() >= 0);
        REQUIRE(blobs.adopt_verified(written).ok());
        std::ifstream in(blobs.path(common::sha256_hex(content)), std::ios::binary);
        CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == content);
    }
    SUBCASE("one dropped before it is stored leaves nothing") {
        const std::string content = "an upload cut short\n";
        { auto written = write(content); }
        CHECK_FALSE(blobs.has(common::sha256_hex(content)));
        CHECK(count_files(dir.path()) == 0);
    }
    SUBCASE("a blob stored meanwhile, or twice in one batch, is stored once, unharmed") {
        const std::string content = "sent by two uploads at once\n";
        const auto digest = common::sha256_hex(content);
        std::vector<agent::BlobStore::Written> written;
        written.push_back(write(content));
        written.push_back(write(content));
        REQUIRE(blobs.put(digest, content).ok());
        REQUIRE(blobs.adopt_verified(written).ok());
        CHECK(count_files(dir.path()) == 1);
        std::ifstream in(blobs.path(digest), std::ios::binary);
        CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == content);
    }
    SUBCASE("past the limit of open ones, named files; a slot is free again once one closes") {
        blobs.limit_unnamed(2);
        std::vector<agent::BlobStore::Written> written;
        for (int i = 0; i < 3; ++i)
            written.push_back(write("limited " + std::to_string(i) + "\n"));
        CHECK(written[0].fd.get() >= 0);
        CHECK(written[1].fd.get() >= 0);
        CHECK(written[2].fd.get() < 0);
        REQUIRE_FALSE(written[2].temp_file.empty());
        CHECK(std::filesystem::exists(written[2].temp_file));
        REQUIRE(blobs.adopt_verified(written).ok());
        CHECK(count_files(tmp) == 0); // the named one renamed into place
        for (int i = 0; i < 3; ++i)
            CHECK(blobs.has(common::sha256_hex("limited " + std::to_string(i) + "\n")));
        written.pop_back();
        written.pop_back(); // one of the two closes
        CHECK(write("after a close\n").fd.get() >= 0);
    }
    SUBCASE("none at all: named temporary files, as before") {
        blobs.limit_unnamed(0);
        const std::string content = "named\n";
        std::vector<agent::BlobStore::Written> written;
        written.push_back(write(content));
        CHECK(written[0].fd.get() < 0);
        CHECK(count_files(tmp) == 1);
        REQUIRE(blobs.adopt_verified(written).ok());
        CHECK(count_files(tmp) == 0);
        CHECK(blobs.has(common::sha256_hex(content)));
    }
}
