#include <agent/store/disk.hpp>

#include <doctest/doctest.h>

#include "temp_dir.hpp"

TEST_CASE("parse_min_free: sizes, shares and 0") {
    auto size = agent::parse_min_free("512m");
    REQUIRE(size.ok());
    CHECK(size->reserve(100ull << 30) == 512ull << 20);
    CHECK(size->describe() == "512.0 MiB");
    auto share = agent::parse_min_free("10%");
    REQUIRE(share.ok());
    CHECK(share->reserve(1000) == 100);
    CHECK(share->describe() == "10%");
    auto none = agent::parse_min_free("0");
    REQUIRE(none.ok());
    CHECK(none->reserve(1ull << 40) == 0);
    for (const char* bad : {"", "%", "-1%", "95%", "lots", "5%%", "1x"}) {
        INFO(bad);
        auto parsed = agent::parse_min_free(bad);
        REQUIRE_FALSE(parsed.ok());
        CHECK(parsed.error().kind == common::ErrorKind::config);
        CHECK(parsed.error().message.find("expected a size") != std::string::npos);
    }
}

TEST_CASE("MinFree's default is the smaller of 1 GiB and 5%") {
    const agent::MinFree standard;
    CHECK(standard.reserve(64ull << 20) == 3355444);     // a 64 MiB disk: 5%
    CHECK(standard.reserve(100ull << 30) == 1ull << 30); // 100 GiB: 1 GiB
    CHECK(standard.describe() == "1.0 GiB or 5%");
}

TEST_CASE("DiskGuard refuses what would eat into the reserve, saying how much is free") {
    test::TempDir dir;
    auto space = agent::disk_space(dir.path());
    REQUIRE(space.ok());
    REQUIRE(space->free > 0);
    REQUIRE(space->size >= space->free);
    agent::MinFree none;
    none.both = false;
    none.bytes = 0;
    none.percent = 0;
    const agent::DiskGuard guard(dir.path(), none);
    CHECK(guard.check(0, "a build").ok());
    CHECK(guard.check(space->free / 2, "this upload").ok());
    auto refused = guard.check(space->free + (1ull << 40), "this upload");
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().kind == common::ErrorKind::disk_full);
    const auto& message = refused.error().message;
    CHECK(message.rfind("the agent's disk is full: ", 0) == 0);
    CHECK(message.find(" free in " + dir.path().string() + ", this upload needs ") !=
          std::string::npos);
    CHECK(message.find("deployctl agent prune") != std::string::npos);

    SUBCASE("a reserve larger than the disk refuses even a build, and names the reserve") {
        agent::MinFree all;
        all.both = false;
        all.percent = 0;
        all.bytes = space->size + 1;
        auto full = agent::DiskGuard(dir.path(), all).check(0, "a build");
        REQUIRE_FALSE(full.ok());
        CHECK(full.error().message.find("too little for a build") != std::string::npos);
        CHECK(full.error().message.find("is kept free: deploy-agent --min-free") !=
              std::string::npos);
    }
    SUBCASE("a guard without a directory checks nothing") {
        CHECK(agent::DiskGuard().check(1ull << 60, "this upload").ok());
    }
}

TEST_CASE("DiskGuard counts inodes too: a tree of many small files can use them all up") {
    agent::MinFree none;
    none.both = false;
    none.bytes = 0;
    none.percent = 0;
    // 4 GiB free of 8, but 7,664 inodes left of 262,144 (a 4 GiB ext4 after ten 18,000-file trees).
    const agent::DiskSpace space{4ull << 30, 8ull << 30, 7664, 262144};
    CHECK(agent::check_space(space, none, "/data", 1 << 20, 7000, "the release's files").ok());
    auto refused = agent::check_space(space, none, "/data", 1 << 20, 18001, "the release's files");
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().kind == common::ErrorKind::disk_full);
    CHECK(refused.error().message ==
          "the agent's disk is full: 7664 more files fit in /data (its file system has 262144 "
          "inodes in all), the release's files needs 18001; free some space (deployctl agent "
          "df, deployctl agent prune) and deploy again");
    SUBCASE("the reserve keeps the same share of the inodes as of the bytes") {
        agent::MinFree share; // the default: the smaller of 1 GiB and 5%, here 5% (410 MiB)
        // 5% of 262,144 inodes is 13,108: 7,664 left is inside it, even for a build.
        auto build = agent::check_space(space, share, "/data", 0, 0, "a build");
        REQUIRE_FALSE(build.ok());
        CHECK(build.error().message.find("too few for a build (and 13108 are kept free, the "
                                         "share of deploy-agent --min-free") != std::string::npos);
        const agent::DiskSpace roomy{4ull << 30, 8ull << 30, 100000, 262144};
        CHECK(agent::check_space(roomy, share, "/data", 0, 86892, "the release's files").ok());
        CHECK_FALSE(
            agent::check_space(roomy, share, "/data", 0, 86893, "the release's files").ok());
    }
    SUBCASE("a file system without a fixed count of inodes (btrfs: 0) is not refused for them") {
        const agent::DiskSpace btrfs{4ull << 30, 8ull << 30, 0, 0};
        CHECK(agent::check_space(btrfs, none, "/data", 0, 1000000, "the release's files").ok());
    }
    SUBCASE("bytes short are told first") {
        auto bytes =
            agent::check_space(space, none, "/data", 5ull << 30, 18001, "the release's files");
        REQUIRE_FALSE(bytes.ok());
        CHECK(bytes.error().message.find("free in /data, the release's files needs 5.0 GiB") !=
              std::string::npos);
    }
    SUBCASE("this machine's file system reports its inodes") {
        test::TempDir dir;
        auto here = agent::disk_space(dir.path());
        REQUIRE(here.ok());
        CHECK(here->free_files <= here->files);
    }
}
