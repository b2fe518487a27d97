// common/ssh_key: public key lines as OpenSSH writes them, and what is refused.
#include <common/ssh_key.hpp>

#include <doctest/doctest.h>

namespace {
const std::string k_key = "AAAAC3NzaC1lZDI1NTE5AAAAIEalXEh10v9Cd7Iy1MWyWZ948m+NmvQ5Q9d3MJMg01Ce";
const std::string k_fingerprint = "SHA256:tK57CdxuFTNLV/JoMa1HVX36bYbY5grxfuI9P7mRoDg";
} // namespace

TEST_CASE("parse_public_key reads a .pub line") {
    auto key = common::parse_public_key("ssh-ed25519 " + k_key + " alice@laptop\n");
    REQUIRE(key);
    CHECK(key->type == "ssh-ed25519");
    CHECK(key->base64 == k_key);
    CHECK(key->comment == "alice@laptop");
    CHECK(common::fingerprint_sha256(key->blob) == k_fingerprint);
    auto bare = common::parse_public_key("ssh-ed25519 " + k_key);
    REQUIRE(bare);
    CHECK(bare->comment.empty());
    CHECK(common::base64(bare->blob) == k_key);
}

TEST_CASE("parse_public_key refuses what is not one public key") {
    const auto refused = [](const std::string& text) {
        auto key = common::parse_public_key(text);
        return key ? std::string() : key.error().message;
    };
    CHECK(refused("").find("not a public key") != std::string::npos);
    CHECK(
        refused("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n")
            .find("private key") != std::string::npos);
    CHECK(refused("ssh-dss AAAAB3 x").find("not a key type") != std::string::npos);
    CHECK(refused("ssh-rsa " + k_key).find("not a ssh-rsa key") != std::string::npos);
    CHECK(refused("ssh-ed25519 !!!").find("not a ssh-ed25519 key") != std::string::npos);
    CHECK(refused("ssh-ed25519 " + k_key + "\nssh-ed25519 " + k_key).find("one line") !=
          std::string::npos);
}
