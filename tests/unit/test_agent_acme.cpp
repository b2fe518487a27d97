// agent/acme/: the JOSE and certificate pieces of the ACME client, checked against
// OpenSSL's own verification and RFC test vectors, and the manager's choice of names.
#include <agent/acme/client.hpp>
#include <agent/acme/crypto.hpp>
#include <agent/acme/manager.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <atomic>
#include <fstream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "temp_dir.hpp"

using namespace agent::acme;

namespace {

std::string unbase64url(std::string_view text) {
    std::string standard(text);
    for (char& c : standard)
        c = c == '-' ? '+' : c == '_' ? '/' : c;
    while (standard.size() % 4 != 0)
        standard += '=';
    std::string out(standard.size(), '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(standard.data()),
                                  static_cast<int>(standard.size()));
    REQUIRE(n >= 0);
    out.resize(static_cast<std::size_t>(n) - (standard.size() - text.size()));
    return out;
}

// Verifies an ES256 signature (r || s) over `data` with `key`, as a CA does.
bool verify_es256(const EcKey& key, std::string_view data, const std::string& signature) {
    if (signature.size() != 64)
        return false;
    ECDSA_SIG* sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(
        sig, BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()), 32, nullptr),
        BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()) + 32, 32, nullptr));
    unsigned char* der = nullptr;
    const int der_size = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    const bool ok =
        EVP_DigestVerifyInit(context, nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
        EVP_DigestVerify(context, der, static_cast<std::size_t>(der_size),
                         reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
    EVP_MD_CTX_free(context);
    OPENSSL_free(der);
    return ok;
}

} // namespace

TEST_CASE("acme: base64url has no padding and the URL-safe alphabet") {
    CHECK(base64url("") == "");
    CHECK(base64url("f") == "Zg");
    CHECK(base64url("fo") == "Zm8");
    CHECK(base64url("foo") == "Zm9v");
    CHECK(base64url("\xfb\xff\xbf") == "-_-_");
    CHECK(unbase64url(base64url("any bytes \x01\xff")) == "any bytes \x01\xff");
}

TEST_CASE("acme: the JWK thumbprint follows RFC 7638 and the JWS verifies") {
    auto key = EcKey::generate();
    REQUIRE(key.ok());
    const auto& jwk = key->jwk();
    CHECK(jwk["kty"] == "EC");
    CHECK(jwk["crv"] == "P-256");
    CHECK(unbase64url(jwk["x"].get<std::string>()).size() == 32);
    // RFC 7638: SHA-256 of the required members, sorted, no spaces.
    const std::string canonical = R"({"crv":"P-256","kty":"EC","x":")" +
                                  jwk["x"].get<std::string>() + R"(","y":")" +
                                  jwk["y"].get<std::string>() + R"("})";
    CHECK(key->thumbprint() == base64url(sha256_bytes(canonical)));
    CHECK(key_authorization("tok-en_1", *key) == "tok-en_1." + key->thumbprint());

    auto jws = sign_jws(*key, "", "nonce-1", "https://ca.test/new-acct", R"({"a":1})");
    REQUIRE(jws.ok());
    auto object = nlohmann::json::parse(*jws);
    auto header = nlohmann::json::parse(unbase64url(object["protected"].get<std::string>()));
    CHECK(header["alg"] == "ES256");
    CHECK(header["nonce"] == "nonce-1");
    CHECK(header["url"] == "https://ca.test/new-acct");
    CHECK(header["jwk"] == jwk);
    CHECK_FALSE(header.contains("kid"));
    CHECK(unbase64url(object["payload"].get<std::string>()) == R"({"a":1})");
    const std::string input =
        object["protected"].get<std::string>() + "." + object["payload"].get<std::string>();
    const std::string signature = unbase64url(object["signature"].get<std::string>());
    CHECK(verify_es256(*key, input, signature));
    CHECK_FALSE(verify_es256(*key, input + "x", signature)); // the check can fail

    // With an account URL: "kid" instead of "jwk"; POST-as-GET has an empty payload.
    auto as_get = sign_jws(*key, "https://ca.test/acct/1", "n2", "https://ca.test/order/1", "");
    REQUIRE(as_get.ok());
    auto get_object = nlohmann::json::parse(*as_get);
    auto get_header =
        nlohmann::json::parse(unbase64url(get_object["protected"].get<std::string>()));
    CHECK(get_header["kid"] == "https://ca.test/acct/1");
    CHECK_FALSE(get_header.contains("jwk"));
    CHECK(get_object["payload"] == "");
}

TEST_CASE("acme: the account key is made once, 0600, and never replaced") {
    test::TempDir dir;
    const auto path = dir.path() / "acme" / "account.key";
    auto first = EcKey::load_or_create(path);
    REQUIRE(first.ok());
    struct stat info {};
    REQUIRE(::stat(path.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    auto second = EcKey::load_or_create(path);
    REQUIRE(second.ok());
    CHECK(second->thumbprint() == first->thumbprint());
    // A damaged key is an error, and the file is left as it is.
    { std::ofstream(path) << "not a key"; }
    auto damaged = EcKey::load_or_create(path);
    REQUIRE_FALSE(damaged.ok());
    CHECK(damaged.error().message.find("move it away") != std::string::npos);
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text == "not a key");
}

TEST_CASE("acme: the CSR names every domain and is signed by the certificate's key") {
    auto key = EcKey::generate();
    REQUIRE(key.ok());
    auto der = make_csr(*key, {"shop.example.com", "*.shop.example.com"});
    REQUIRE(der.ok());
    const auto* p = reinterpret_cast<const unsigned char*>(der->data());
    X509_REQ* request = d2i_X509_REQ(nullptr, &p, static_cast<long>(der->size()));
    REQUIRE(request != nullptr);
    CHECK(X509_REQ_verify(request, key->get()) == 1);
    STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(request);
    REQUIRE(extensions != nullptr);
    auto* sans = static_cast<GENERAL_NAMES*>(
        X509V3_get_d2i(extensions, NID_subject_alt_name, nullptr, nullptr));
    REQUIRE(sans != nullptr);
    CHECK(sk_GENERAL_NAME_num(sans) == 2);
    GENERAL_NAMES_free(sans);
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
    X509_REQ_free(request);
}

TEST_CASE("acme: the TLS-ALPN-01 certificate carries the critical acmeIdentifier") {
    const std::string key_auth = "token.thumbprint";
    auto pair = tls_alpn_certificate("shop.example.com", key_auth);
    REQUIRE(pair.ok());
    BIO* bio = BIO_new_mem_buf(pair->cert.data(), static_cast<int>(pair->cert.size()));
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    REQUIRE(cert != nullptr);
    ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    const int at = X509_get_ext_by_OBJ(cert, oid, -1);
    ASN1_OBJECT_free(oid);
    REQUIRE(at >= 0);
    X509_EXTENSION* extension = X509_get_ext(cert, at);
    CHECK(X509_EXTENSION_get_critical(extension) == 1);
    const ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(extension);
    const std::string bytes(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                            static_cast<std::size_t>(ASN1_STRING_length(value)));
    CHECK(bytes == std::string("\x04\x20", 2) + sha256_bytes(key_auth)); // OCTET STRING (32)
    X509_free(cert);
    auto summary = summarize_certificate(pair->cert);
    REQUIRE(summary.ok());
    CHECK(summary->names == std::vector<std::string>{"shop.example.com"});
    CHECK(summary->not_after > summary->not_before);
}

TEST_CASE("acme: DNS-01's value and EAB's binding") {
    // RFC 8555 §8.4: base64url(SHA-256(key authorization)), 43 characters.
    CHECK(dns01_value("abc.def").size() == 43);
    CHECK(dns01_value("abc.def") == base64url(sha256_bytes("abc.def")));
    auto key = EcKey::generate();
    REQUIRE(key.ok());
    auto binding = external_account_binding(*key, "kid-1", base64url("secret-mac-key"),
                                            "https://ca.test/new-acct");
    REQUIRE(binding.ok());
    auto header = nlohmann::json::parse(unbase64url((*binding)["protected"].get<std::string>()));
    CHECK(header["alg"] == "HS256");
    CHECK(header["kid"] == "kid-1");
    CHECK(nlohmann::json::parse(unbase64url((*binding)["payload"].get<std::string>())) ==
          key->jwk());
    CHECK_FALSE(external_account_binding(*key, "kid-1", "not base64!", "u").ok());
}

TEST_CASE("acme: problem documents become one line") {
    CHECK(problem_message(R"({"type":"urn:ietf:params:acme:error:badNonce","detail":"old"})",
                          "HTTP 400") == "badNonce: old");
    CHECK(problem_message(R"({"type":"urn:ietf:params:acme:error:rejectedIdentifier",)"
                          R"("detail":"2 names","subproblems":[{"detail":"a.test is bad"}]})",
                          "x") == "rejectedIdentifier: 2 names; a.test is bad");
    CHECK(problem_message("<html>", "HTTP 502") == "HTTP 502");
}

TEST_CASE("acme: which routed hosts can have a certificate") {
    CHECK(Manager::eligible("shop.example.com"));
    CHECK(Manager::eligible("*.example.com"));
    CHECK(Manager::eligible("xn--bcher-kva.example"));
    CHECK_FALSE(Manager::eligible("hello.localhost"));
    CHECK_FALSE(Manager::eligible("localhost"));
    CHECK_FALSE(Manager::eligible("printer.local"));
    CHECK_FALSE(Manager::eligible("intranet"));
    CHECK_FALSE(Manager::eligible("10.0.0.7"));
    CHECK_FALSE(Manager::eligible("::1"));
    CHECK_FALSE(Manager::eligible("a..b.com"));
    CHECK_FALSE(Manager::eligible("Shop.example.com"));
    CHECK_FALSE(Manager::eligible("sh op.example.com"));
    CHECK_FALSE(Manager::eligible("*.*.example.com"));
    CHECK(Manager::file_stem("*.example.com") == "_.example.com");
    CHECK(Manager::file_stem("www.example.com") == "www.example.com");
}

TEST_CASE("acme: on_demand without ask is refused when the manager opens") {
    test::TempDir dir;
    Settings settings;
    settings.enabled = true;
    settings.on_demand = true;
    Manager manager(settings, agent::DataDir(dir.path()), "127.0.0.1:8443", nullptr);
    auto opened = manager.open();
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.error().message.find("needs ask") != std::string::npos);
}

TEST_CASE("acme: a request to a CA that never answers ends at once when the agent stops") {
    // A listening socket that never accepts: the TLS handshake would wait for the timeout.
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listener >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener, 4) == 0);
    socklen_t length = sizeof address;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
    auto key = EcKey::generate();
    REQUIRE(key.ok());
    std::atomic<bool> cancel{false};
    ClientOptions options;
    options.directory = "https://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/dir";
    options.timeout = std::chrono::seconds(20);
    options.cancel = &cancel;
    Client client(options, *key);
    std::thread stopper([&cancel] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        cancel = true;
    });
    const auto started = std::chrono::steady_clock::now();
    auto opened = client.open();
    const auto took = std::chrono::steady_clock::now() - started;
    stopper.join();
    ::close(listener);
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.error().message.find("shutting down") != std::string::npos);
    CHECK(took < std::chrono::seconds(5)); // not the 20 s timeout
}
