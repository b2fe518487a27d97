#include <common/fs.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <sys/stat.h>

#include "temp_dir.hpp"

TEST_CASE("sha256 matches known vectors") {
    CHECK(common::sha256_hex("") ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(common::sha256_hex("abc") ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    common::Sha256 incremental;
    incremental.update("a");
    incremental.update("bc");
    CHECK(incremental.final_hex() == common::sha256_hex("abc"));
    CHECK(common::is_sha256_hex(common::sha256_hex("abc")));
    CHECK_FALSE(common::is_sha256_hex("ABC"));
    CHECK_FALSE(common::is_sha256_hex(std::string(64, 'g')));
}

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

TEST_CASE("exit codes follow docs/design.md §6") {
    using common::ErrorKind;
    CHECK(common::exit_code(ErrorKind::failed) == 1);
    CHECK(common::exit_code(ErrorKind::config) == 2);
    CHECK(common::exit_code(ErrorKind::usage) == 2);
    CHECK(common::exit_code(ErrorKind::connection) == 3);
    CHECK(common::exit_code(ErrorKind::auth) == 3);
    CHECK(common::exit_code(ErrorKind::timeout) == 4);
    CHECK(common::exit_code(ErrorKind::refused) == 5);
    CHECK(std::string(common::error_code(ErrorKind::refused)) == "refused");
}
