#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <string>

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

TEST_CASE("to_hex and random_hex") {
    CHECK(common::to_hex(std::string("\x00\x0f\xa5\xff", 4)) == "000fa5ff");
    CHECK(common::to_hex("") == "");
    auto a = common::random_hex(16);
    auto b = common::random_hex(16);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->size() == 32);
    CHECK(a->find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(*a != *b);
}
