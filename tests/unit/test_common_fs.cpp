#include <common/fs.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <sys/stat.h>

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
