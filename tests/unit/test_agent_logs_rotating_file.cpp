#include <agent/logs/follow.hpp>
#include <agent/logs/rotating_file.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

std::uint64_t bytes_under(const fs::path& dir) {
    std::uint64_t total = 0;
    for (const auto& entry : fs::directory_iterator(dir))
        total += entry.file_size();
    return total;
}

} // namespace

TEST_CASE("a rotating log keeps max_size x (keep + 1) at most, compressed, nothing lost") {
    test::TempDir dir;
    const auto log = dir.path() / "v1.app.log";
    agent::logs::RotatingFile file(log, {64 * 1024, 2});
    std::string all;
    for (int i = 0; i < 5000; ++i) {
        const std::string line = "line " + std::to_string(i) + " " + std::string(60, 'x') + "\n";
        REQUIRE(file.write(line).ok());
        all += line;
    }
    // 5000 lines of ~70 bytes: 350 KB written, five rotations; two kept.
    CHECK(fs::exists(log));
    CHECK(fs::exists(agent::logs::rotated_path(log, 1)));
    CHECK(fs::exists(agent::logs::rotated_path(log, 2)));
    CHECK_FALSE(fs::exists(agent::logs::rotated_path(log, 3)));
    CHECK_FALSE(fs::exists(log.string() + ".1")); // only the compressed one stays
    CHECK(bytes_under(dir.path()) <= 3 * 64 * 1024);
    CHECK(fs::file_size(agent::logs::rotated_path(log, 1)) < 64 * 1024 / 4); // compressed

    // The kept generations, oldest first, then the current log, are the end of what was written.
    std::string kept;
    const auto rotated = agent::logs::rotated_files(log);
    REQUIRE(rotated.size() == 2);
    CHECK(rotated.front() == agent::logs::rotated_path(log, 2));
    for (const auto& path : rotated) {
        auto text = agent::logs::read_log_file(path);
        REQUIRE(text.ok());
        CHECK(text->size() >= 64 * 1024);
        kept += *text;
    }
    kept += *common::read_file(log);
    REQUIRE(kept.size() < all.size());
    CHECK(all.compare(all.size() - kept.size(), kept.size(), kept) == 0);

    SUBCASE("read_log_pieces: the same content, in pieces; a cut frame is an error") {
        const auto oldest = rotated.front();
        std::string joined;
        int pieces = 0;
        REQUIRE(agent::logs::read_log_pieces(oldest, [&](std::string_view piece) {
                    CHECK(piece.size() <= 1024 * 1024);
                    joined.append(piece);
                    return ++pieces > 0;
                }).ok());
        CHECK(joined == *agent::logs::read_log_file(oldest));
        CHECK(pieces >= 1);
        int calls = 0; // each stops it
        REQUIRE(agent::logs::read_log_pieces(oldest, [&](std::string_view) {
                    return ++calls < 1;
                }).ok());
        CHECK(calls == 1);
        auto compressed = common::read_file(oldest).value();
        const auto cut = dir.path() / "cut.log.1.zst";
        REQUIRE(common::atomic_write_file(cut, compressed.substr(0, compressed.size() / 2)).ok());
        auto broken = agent::logs::read_log_pieces(cut, [](std::string_view) { return true; });
        REQUIRE_FALSE(broken.ok());
        CHECK(broken.error().message.find("ends within a zstd frame") != std::string::npos);
        CHECK_FALSE(
            agent::logs::read_log_pieces(dir.path() / "missing.log.1.zst", [](std::string_view) {
                return true;
            }).ok());
    }
}

TEST_CASE("a log with max_size 0 never rotates; keep 0 starts the log over") {
    test::TempDir dir;
    {
        agent::logs::RotatingFile file(dir.path() / "a.log", {0, 5});
        for (int i = 0; i < 100; ++i)
            REQUIRE(file.write(std::string(1024, 'a') + "\n").ok());
    }
    CHECK(fs::file_size(dir.path() / "a.log") == 100 * 1025);
    CHECK(agent::logs::rotated_files(dir.path() / "a.log").empty());
    agent::logs::RotatingFile file(dir.path() / "b.log", {64 * 1024, 0});
    for (int i = 0; i < 100; ++i)
        REQUIRE(file.write(std::string(1024, 'b') + "\n").ok());
    CHECK(fs::file_size(dir.path() / "b.log") < 64 * 1024);
    CHECK(agent::logs::rotated_files(dir.path() / "b.log").empty());
}

TEST_CASE("two writers of one log follow each other's rotations") {
    test::TempDir dir;
    const auto log = dir.path() / "v1.worker.log";
    agent::logs::RotatingFile a(log, {64 * 1024, 3});
    agent::logs::RotatingFile b(log, {64 * 1024, 3});
    std::size_t written = 0;
    for (int i = 0; i < 6000; ++i) {
        const std::string line = std::string(i % 2 ? "b " : "a ") + std::string(80, 'z') + "\n";
        REQUIRE((i % 2 ? b : a).write(line).ok());
        written += line.size();
    }
    std::size_t kept = fs::file_size(log);
    for (const auto& path : agent::logs::rotated_files(log))
        kept += agent::logs::read_log_file(path)->size();
    // Every line written went to a file that was kept or to one rotated out of the
    // bound (keep = 3 of 64 KiB): nothing was written to an unlinked file.
    CHECK(kept <= written);
    CHECK(kept >= 3 * 64 * 1024);
    CHECK(agent::logs::rotated_files(log).size() == 3);
}

TEST_CASE("a follower of a log that rotated reads the new one from its start") {
    test::TempDir dir;
    const auto log = dir.path() / "v1.app.log";
    agent::logs::RotatingFile file(log, {64 * 1024, 1});
    agent::logs::LineReader reader(log);
    REQUIRE(file.write("first\n").ok());
    CHECK(reader.read_new_lines() == std::vector<std::string>{"first"});
    // Past the size the log rotates, and the new one grows beyond the old offset.
    REQUIRE(file.write(std::string(64 * 1024, 'x') + "\n").ok());
    REQUIRE(fs::file_size(log) == 0);
    REQUIRE(file.write("after the rotation\n").ok());
    CHECK(reader.read_new_lines() == std::vector<std::string>{"after the rotation"});
}
