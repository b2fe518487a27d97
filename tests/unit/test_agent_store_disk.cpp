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
