#include <common/fs.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "temp_dir.hpp"

TEST_CASE("atomic_write_file replaces content and leaves no temporary file") {
    test::TempDir dir;
    const auto path = dir.path() / "routes.json";
    REQUIRE(common::atomic_write_file(path, "one").ok());
    REQUIRE(common::atomic_write_file(path, "two", 0600).ok());
    CHECK(*common::read_file(path) == "two");
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    int files = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path()))
        ++files;
    CHECK(files == 1);
    CHECK(*common::sha256_file(path) == common::sha256_hex("two"));
}

TEST_CASE("file helpers report errors") {
    test::TempDir dir;
    auto missing = common::read_file(dir.path() / "missing");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().kind == common::ErrorKind::io);
    CHECK_FALSE(common::atomic_write_file(dir.path() / "no/such/dir/file", "x").ok());
    CHECK_FALSE(common::sha256_file(dir.path() / "missing").ok());
}

TEST_CASE("a full disk says so plainly") {
    CHECK(common::os_error_text(ENOSPC).find("No space left on device: the disk is full") == 0);
    CHECK(common::os_error_text(EDQUOT).find("quota is used up") != std::string::npos);
    CHECK(common::os_error_text(EIO) == "Input/output error");
    CHECK(common::io_error_kind(ENOSPC) == common::ErrorKind::disk_full);
    CHECK(common::io_error_kind(EDQUOT) == common::ErrorKind::disk_full);
    CHECK(common::io_error_kind(EIO) == common::ErrorKind::io);
}

TEST_CASE("temporary files of failed writes are removed, unless their writer runs") {
    test::TempDir dir;
    const auto write = [&](const std::string& name) {
        std::ofstream(dir.path() / name) << "x";
        return dir.path() / name;
    };
    // pid 999999999 cannot exist (above pid_max); our own pid runs.
    const auto stale = write("routes.json.tmp-999999999-1f2e");
    const auto running = write("applied.tmp-" + std::to_string(::getpid()) + "-ab");
    const auto kept = {write("routes.json"), write("notes.tmp-1x-ab"), write(".tmp-v3"),
                       write("a.tmp-12-XYZ")};
    CHECK(common::remove_temp_files(dir.path()) == 1);
    CHECK_FALSE(std::filesystem::exists(stale));
    CHECK(std::filesystem::exists(running));
    for (const auto& file : kept)
        CHECK(std::filesystem::exists(file));
    CHECK(common::remove_temp_files(dir.path() / "missing") == 0);
}

TEST_CASE("read_regular_file: a regular file of a wanted size, nothing else") {
    test::TempDir tmp;
    const auto file = tmp.path() / "file";
    REQUIRE(common::atomic_write_file(file, "twelve bytes"));
    const auto any = [](std::uint64_t) { return true; };
    CHECK(common::read_regular_file(file, any) == "twelve bytes");
    std::uint64_t asked = 0;
    CHECK_FALSE(common::read_regular_file(file, [&](std::uint64_t size) {
        asked = size;
        return false;
    }));
    CHECK(asked == 12);
    CHECK_FALSE(common::read_regular_file(tmp.path() / "missing", any));
    CHECK_FALSE(common::read_regular_file(tmp.path(), any)); // a folder
    std::filesystem::create_symlink(file, tmp.path() / "link");
    CHECK_FALSE(common::read_regular_file(tmp.path() / "link", any)); // not followed
    REQUIRE(::mkfifo((tmp.path() / "fifo").c_str(), 0600) == 0);
    CHECK_FALSE(common::read_regular_file(tmp.path() / "fifo", any)); // and not waited on
}
