#include <common/fingerprint.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {

const std::string k_canonical =
    "sha256:3A:5F:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:01:23:45:67:89:AB:CD:EF:"
    "FE:DC:BA:98:76:54";
const std::string k_hex = "3a5f00112233445566778899aabbccddeeff0123456789abcdeffedcba9876"
                          "54";

std::string parsed(const std::string& text) {
    auto result = common::parse_fingerprint(text);
    REQUIRE_MESSAGE(result.ok(), text);
    return *result;
}

} // namespace

TEST_CASE("parse_fingerprint accepts what openssl prints, in every spelling") {
    const std::string pairs = k_canonical.substr(7);
    CHECK(parsed(k_canonical) == k_canonical);
    SUBCASE("openssl x509 -noout -fingerprint -sha256, OpenSSL 3 and 1.1") {
        CHECK(parsed("sha256 Fingerprint=" + pairs) == k_canonical);
        CHECK(parsed("SHA256 Fingerprint=" + pairs + "\n") == k_canonical);
    }
    SUBCASE("without the prefix, without colons, any case") {
        CHECK(parsed(pairs) == k_canonical);
        CHECK(parsed(k_hex) == k_canonical);
        CHECK(parsed("SHA256:" + k_hex) == k_canonical);
        CHECK(parsed("sha256:" + std::string("3a:5f") + pairs.substr(5)) == k_canonical);
    }
}

TEST_CASE("parse_fingerprint refuses what is not 32 well-placed hex pairs") {
    for (const std::string& bad :
         {std::string(""), std::string("sha256:"), k_hex.substr(2), k_hex + "00", "sha1:" + k_hex,
          "md5 Fingerprint=" + k_hex, k_hex.substr(0, 63) + "g",
          // colons that are not between pairs
          "3A5:F" + k_canonical.substr(12), ":" + k_canonical.substr(7),
          k_canonical.substr(7) + ":", "3A::5F" + k_canonical.substr(12)}) {
        auto result = common::parse_fingerprint(bad);
        CHECK_MESSAGE(!result.ok(), bad);
        if (!result.ok()) {
            CHECK(result.error().kind == common::ErrorKind::usage);
            CHECK(result.error().message.find("32 hex pairs") != std::string::npos);
        }
    }
}

TEST_CASE("der_fingerprint is the SHA-256 of the bytes in canonical form") {
    const std::string der = "not really DER, but any bytes hash";
    const auto fingerprint = common::der_fingerprint(der);
    CHECK(fingerprint.size() == 7 + 32 * 3 - 1);
    CHECK(parsed(common::sha256_hex(der)) == fingerprint);
    CHECK(common::openssl_fingerprint_form(fingerprint) ==
          "sha256 Fingerprint=" + fingerprint.substr(7));
}
