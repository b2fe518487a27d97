// cli/transport/known_hosts: OpenSSH known_hosts lookups (plain, [host]:port,
// hashed) and recording a first-seen key, against files the test writes.
#include <cli/transport/known_hosts.hpp>
#include <common/ssh_key.hpp>

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace cli::transport;
using common::fingerprint_sha256;
using common::key_type_of;

namespace {

// Two ed25519 public keys (ssh-keygen -t ed25519) and their fingerprints as
// `ssh-keygen -l -E sha256` prints them.
const std::string k_key_a = "AAAAC3NzaC1lZDI1NTE5AAAAIEalXEh10v9Cd7Iy1MWyWZ948m+NmvQ5Q9d3MJMg01Ce";
const std::string k_fp_a = "SHA256:tK57CdxuFTNLV/JoMa1HVX36bYbY5grxfuI9P7mRoDg";
const std::string k_key_b = "AAAAC3NzaC1lZDI1NTE5AAAAIE5XJN18ItZiGUm1x5jlOnyBdrLpK5wp0cL+TNxhPgG7";
const std::string k_fp_b = "SHA256:ddLdDESHL6tLGmIw+sCsf+x1qCOTqyiSyM+I58TjHZA";

std::string to_base64(const std::string& bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    out.resize(static_cast<std::size_t>(EVP_EncodeBlock(
        reinterpret_cast<unsigned char*>(out.data()),
        reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()))));
    return out;
}

std::string blob(const std::string& base64) {
    std::string out(base64.size(), '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(base64.data()),
                                  static_cast<int>(base64.size()));
    out.resize(static_cast<std::size_t>(n)); // these keys have no padding
    return out;
}

// What `ssh-keygen -H` writes for `name`: |1|base64(salt)|base64(HMAC-SHA1(salt, name)).
std::string hashed(const std::string& name, const std::string& salt) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned length = 0;
    HMAC(EVP_sha1(), salt.data(), static_cast<int>(salt.size()),
         reinterpret_cast<const unsigned char*>(name.data()), name.size(), mac, &length);
    return "|1|" + to_base64(salt) + "|" +
           to_base64(std::string(reinterpret_cast<const char*>(mac), length));
}

fs::path write(const fs::path& file, const std::string& text) {
    std::ofstream(file) << text;
    return file;
}

HostKeyStatus status_of(const fs::path& file, const std::string& host, int port,
                        const std::string& key) {
    auto check = check_known_host(file, host, port, blob(key));
    REQUIRE(check.ok());
    return check->status;
}

std::string read(const fs::path& file) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

} // namespace

TEST_CASE("fingerprint_sha256 and key_type_of match OpenSSH") {
    CHECK(fingerprint_sha256(blob(k_key_a)) == k_fp_a);
    CHECK(fingerprint_sha256(blob(k_key_b)) == k_fp_b);
    CHECK(key_type_of(blob(k_key_a)) == "ssh-ed25519");
    CHECK(key_type_of("xx").empty());
    CHECK(known_hosts_name("web1", 22) == "web1");
    CHECK(known_hosts_name("127.0.0.1", 2222) == "[127.0.0.1]:2222");
}

TEST_CASE("check_known_host: known, unknown and changed keys") {
    test::TempDir dir;
    const auto file = write(dir.path() / "known_hosts", "# a comment\n"
                                                        "web1 ssh-ed25519 " +
                                                            k_key_a +
                                                            "\n"
                                                            "[127.0.0.1]:2222 ssh-ed25519 " +
                                                            k_key_a +
                                                            " comment\n"
                                                            "unsupported-line-libssh2-cannot-read\n"
                                                            "web2,10.0.0.2 ssh-ed25519 " +
                                                            k_key_b + "\n");
    SUBCASE("known") {
        CHECK(status_of(file, "web1", 22, k_key_a) == HostKeyStatus::known);
        CHECK(status_of(file, "127.0.0.1", 2222, k_key_a) == HostKeyStatus::known);
        CHECK(status_of(file, "10.0.0.2", 22, k_key_b) == HostKeyStatus::known);
    }
    SUBCASE("unknown host, or no file at all") {
        CHECK(status_of(file, "web3", 22, k_key_a) == HostKeyStatus::unknown);
        CHECK(status_of(dir.path() / "missing", "web1", 22, k_key_a) == HostKeyStatus::unknown);
    }
    SUBCASE("changed: another key on file, whose fingerprint is reported") {
        auto check = check_known_host(file, "web1", 22, blob(k_key_b));
        REQUIRE(check.ok());
        CHECK(check->status == HostKeyStatus::changed);
        CHECK(check->known_fingerprint == k_fp_a);
        CHECK(status_of(file, "127.0.0.1", 2222, k_key_b) == HostKeyStatus::changed);
    }
}

TEST_CASE("check_known_host reads hashed entries (ssh-keygen -H)") {
    test::TempDir dir;
    const auto file =
        write(dir.path() / "known_hosts",
              hashed("[127.0.0.1]:2222", "0123456789abcdefghij") + " ssh-ed25519 " + k_key_a +
                  "\n" + hashed("web1", "saltsaltsaltsaltsalt") + " ssh-ed25519 " + k_key_b + "\n");
    CHECK(status_of(file, "127.0.0.1", 2222, k_key_a) == HostKeyStatus::known);
    CHECK(status_of(file, "web1", 22, k_key_b) == HostKeyStatus::known);
    CHECK(status_of(file, "web1", 22, k_key_a) == HostKeyStatus::changed);
    CHECK(status_of(file, "127.0.0.1", 2223, k_key_a) == HostKeyStatus::unknown);
}

TEST_CASE("add_known_host records a key that check_known_host then knows") {
    test::TempDir dir;
    const auto ssh = dir.path() / "home" / ".ssh";
    const auto file = ssh / "known_hosts";
    REQUIRE(add_known_host(file, "127.0.0.1", 2222, blob(k_key_a)).ok());
    CHECK((fs::status(ssh).permissions() & fs::perms::all) == fs::perms::owner_all);
    CHECK((fs::status(file).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));
    CHECK(read(file) == "[127.0.0.1]:2222 ssh-ed25519 " + k_key_a + "\n");
    CHECK(status_of(file, "127.0.0.1", 2222, k_key_a) == HostKeyStatus::known);

    SUBCASE("appends after a last line without a newline") {
        write(file, "web1 ssh-ed25519 " + k_key_b);
        REQUIRE(add_known_host(file, "web9", 22, blob(k_key_a)).ok());
        CHECK(read(file) == "web1 ssh-ed25519 " + k_key_b + "\nweb9 ssh-ed25519 " + k_key_a + "\n");
        CHECK(status_of(file, "web1", 22, k_key_b) == HostKeyStatus::known);
        CHECK(status_of(file, "web9", 22, k_key_a) == HostKeyStatus::known);
    }
}
