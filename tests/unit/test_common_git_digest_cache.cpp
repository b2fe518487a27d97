#include <common/fs.hpp>
#include <common/git/digest_cache.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include "temp_dir.hpp"

using common::git::DigestCache;

TEST_CASE("DigestCache: what one run adds the next finds; damaged lines are skipped") {
    test::TempDir dir;
    const auto file = dir.path() / "deployctl" / "digests";
    const auto a = common::sha256_hex("a"), b = common::sha256_hex("b");
    {
        DigestCache cache(file); // no file yet
        CHECK(cache.find(DigestCache::git_key("1111")) == nullptr);
        cache.add(DigestCache::git_key("1111"), a, 1);
        const auto* added = cache.find("g:1111");
        REQUIRE(added != nullptr);
        CHECK(added->digest == a);
        cache.save();
    }
    REQUIRE(common::write_unsynced(file,
                                   "g:2222 " + b + " 22\n" + "g:cut-short " + b.substr(0, 10) +
                                       "\n" + "g:3333 not-a-digest 3\n" + "g:4444 " + b + " 12x\n" +
                                       "g:5555 " + b + " 99999999999999999999\n",
                                   true));
    DigestCache cache(file);
    const auto* one = cache.find("g:1111");
    REQUIRE(one != nullptr);
    CHECK(one->digest == a);
    CHECK(one->size == 1);
    const auto* two = cache.find_git("2222");
    REQUIRE(two != nullptr);
    CHECK(two->digest == b);
    CHECK(two->size == 22);
    for (const char* damaged : {"g:cut-short", "g:3333", "g:4444", "g:5555"})
        CHECK(cache.find(damaged) == nullptr);
    // A key known already is not added (nor written) again.
    cache.add("g:2222", a, 5);
    CHECK(cache.find("g:2222")->digest == b);
    cache.save();
    CHECK(common::read_file(file)->find("g:2222 " + a) == std::string::npos);
}
