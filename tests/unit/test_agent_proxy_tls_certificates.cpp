#include <agent/api/connection.hpp>
#include <agent/api/router.hpp>
#include <agent/api/tls.hpp>
#include <agent/proxy/acme.hpp>
#include <agent/proxy/tls_certificates.hpp>
#include <common/fingerprint.hpp>

#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <tuple>
#include <unistd.h>
#include <vector>

#include "temp_dir.hpp"

// Keys and self-signed certificates are made here with the OpenSSL C API, so
// the tests need no fixture files and no openssl command.

using agent::proxy::CertificateFiles;
using agent::proxy::TlsCertificates;

namespace {

struct KeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct CertFree {
    void operator()(X509* p) const { X509_free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

Key ec_key() {
    Key key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    REQUIRE(key != nullptr);
    return key;
}

Key rsa_key() {
    Key key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
    REQUIRE(key != nullptr);
    return key;
}

// A self-signed certificate for `key`; `san` in X509V3 config syntax
// ("DNS:a.example.test,DNS:*.a.example.test"), empty for none; `cn` empty for
// no subject common name.
Cert make_cert(EVP_PKEY* key, const std::string& cn, const std::string& san, long days = 30) {
    static long serial = 1;
    Cert cert(X509_new());
    REQUIRE(cert != nullptr);
    REQUIRE(X509_set_version(cert.get(), 2) == 1);
    REQUIRE(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++) == 1);
    REQUIRE(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60) != nullptr);
    REQUIRE(X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * 24 * 3600) != nullptr);
    REQUIRE(X509_set_pubkey(cert.get(), key) == 1);
    X509_NAME* name = X509_get_subject_name(cert.get());
    if (!cn.empty())
        REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                           reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                                           -1, 0) == 1);
    else
        REQUIRE(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                           reinterpret_cast<const unsigned char*>("no name"), -1,
                                           -1, 0) == 1);
    REQUIRE(X509_set_issuer_name(cert.get(), name) == 1);
    if (!san.empty()) {
        X509_EXTENSION* ext =
            X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
        REQUIRE(ext != nullptr);
        REQUIRE(X509_add_ext(cert.get(), ext, -1) == 1);
        X509_EXTENSION_free(ext);
    }
    REQUIRE(X509_sign(cert.get(), key, EVP_sha256()) > 0);
    return cert;
}

void write_cert(const std::filesystem::path& path, X509* cert) {
    BIO* bio = BIO_new_file(path.c_str(), "w");
    REQUIRE(bio != nullptr);
    const int ok = PEM_write_bio_X509(bio, cert);
    BIO_free(bio);
    REQUIRE(ok == 1);
}

void write_key(const std::filesystem::path& path, EVP_PKEY* key, const char* passphrase = nullptr) {
    BIO* bio = BIO_new_file(path.c_str(), "w");
    REQUIRE(bio != nullptr);
    int ok = 0;
    if (passphrase == nullptr)
        ok = PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    else
        ok = PEM_write_bio_PrivateKey(bio, key, EVP_aes_256_cbc(),
                                      reinterpret_cast<const unsigned char*>(passphrase),
                                      static_cast<int>(std::strlen(passphrase)), nullptr, nullptr);
    BIO_free(bio);
    REQUIRE(ok == 1);
}

// The subject common name of the certificate a context serves ("" if none).
std::string cn_of(X509* cert) {
    if (cert == nullptr)
        return "";
    X509_NAME* subject = X509_get_subject_name(cert);
    const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at < 0)
        return "";
    const ASN1_STRING* text = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
    return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
            static_cast<std::size_t>(ASN1_STRING_length(text))};
}

std::string cn_of(SSL_CTX* context) {
    REQUIRE(context != nullptr);
    return cn_of(SSL_CTX_get0_certificate(context));
}

// A key and a certificate written as <stem>.crt and <stem>.key in `dir`.
CertificateFiles write_pair(const std::filesystem::path& dir, const std::string& stem,
                            const std::string& cn, const std::string& san) {
    auto key = ec_key();
    auto cert = make_cert(key.get(), cn, san);
    CertificateFiles files{(dir / (stem + ".crt")).string(), (dir / (stem + ".key")).string()};
    write_cert(files.cert, cert.get());
    write_key(files.key, key.get());
    return files;
}

// The error of a load expected to fail: ErrorKind::config and its message.
std::string load_error(const std::vector<CertificateFiles>& files) {
    auto loaded = TlsCertificates::load(files);
    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.error().kind == common::ErrorKind::config);
    return loaded.error().message;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("TlsCertificates: two certificate pairs, a context chosen by exact name or wildcard") {
    test::TempDir dir;
    const auto a = write_pair(dir.path(), "a", "cert-a", "DNS:a.example.test,DNS:*.a.example.test");
    const auto b = write_pair(dir.path(), "b", "cert-b", "DNS:b.example.test,DNS:*.b.example.test");
    auto loaded = TlsCertificates::load({a, b});
    REQUIRE(loaded.ok());
    const TlsCertificates& certificates = **loaded;

    SUBCASE("exact names") {
        CHECK(cn_of(certificates.context_for("a.example.test")) == "cert-a");
        CHECK(cn_of(certificates.context_for("b.example.test")) == "cert-b");
        CHECK(certificates.covers("a.example.test"));
        CHECK(certificates.covers("b.example.test"));
    }
    SUBCASE("a wildcard covers one label below it") {
        CHECK(cn_of(certificates.context_for("www.a.example.test")) == "cert-a");
        CHECK(cn_of(certificates.context_for("api.b.example.test")) == "cert-b");
        CHECK(certificates.covers("www.b.example.test"));
    }
    SUBCASE("a wildcard covers neither two labels below it nor the names beside it") {
        CHECK(certificates.context_for("x.www.a.example.test") == nullptr);
        CHECK_FALSE(certificates.covers("x.www.b.example.test"));
        CHECK(certificates.context_for("example.test") == nullptr);
        CHECK(certificates.context_for("c.example.test") == nullptr);
    }
    SUBCASE("unknown and degenerate names") {
        CHECK(certificates.context_for("other.test") == nullptr);
        CHECK_FALSE(certificates.covers("other.test"));
        CHECK(certificates.context_for("") == nullptr);
        CHECK(certificates.context_for("localhost") == nullptr);
        CHECK(certificates.context_for(".a.example.test") == nullptr);
    }
    SUBCASE("the first pair is the default") {
        CHECK(cn_of(certificates.default_context()) == "cert-a");
        CHECK(certificates.default_context() == certificates.context_for("a.example.test"));
        CHECK(certificates.default_context() != certificates.context_for("b.example.test"));
    }
    SUBCASE("the order of the list decides the default") {
        auto reversed = TlsCertificates::load({b, a});
        REQUIRE(reversed.ok());
        CHECK(cn_of((*reversed)->default_context()) == "cert-b");
        // The choice by name does not depend on the order.
        CHECK(cn_of((*reversed)->context_for("www.a.example.test")) == "cert-a");
    }
    SUBCASE("the info lists each certificate's file, names and expiry") {
        const auto& info = certificates.certificates();
        REQUIRE(info.size() == 2);
        CHECK(info[0].cert_path == a.cert);
        CHECK(info[0].names == std::vector<std::string>{"a.example.test", "*.a.example.test"});
        CHECK(info[1].cert_path == b.cert);
        CHECK(info[1].names == std::vector<std::string>{"b.example.test", "*.b.example.test"});
        const auto now = std::chrono::system_clock::now();
        for (const auto& one : info) {
            // Made to expire in 30 days.
            CHECK(one.not_after > now + std::chrono::hours(24 * 29));
            CHECK(one.not_after < now + std::chrono::hours(24 * 31));
        }
    }
}

TEST_CASE("TlsCertificates: the earlier certificate keeps a name two certificates cover") {
    test::TempDir dir;
    const auto first =
        write_pair(dir.path(), "first", "cert-first", "DNS:shared.example.test,DNS:*.example.test");
    const auto second = write_pair(dir.path(), "second", "cert-second",
                                   "DNS:shared.example.test,DNS:*.example.test,"
                                   "DNS:only-second.example.test");
    auto loaded = TlsCertificates::load({first, second});
    REQUIRE(loaded.ok());
    CHECK(cn_of((*loaded)->context_for("shared.example.test")) == "cert-first");
    CHECK(cn_of((*loaded)->context_for("www.example.test")) == "cert-first");
    // An exact name beats a wildcard, even one from an earlier certificate.
    CHECK(cn_of((*loaded)->context_for("only-second.example.test")) == "cert-second");

    auto swapped = TlsCertificates::load({second, first});
    REQUIRE(swapped.ok());
    CHECK(cn_of((*swapped)->context_for("shared.example.test")) == "cert-second");
    CHECK(cn_of((*swapped)->context_for("www.example.test")) == "cert-second");
}

TEST_CASE("TlsCertificates: certificate names are stored lower-case") {
    test::TempDir dir;
    const auto mixed = write_pair(dir.path(), "mixed", "cert-mixed",
                                  "DNS:Mixed.Example.TEST,DNS:*.Wild.Example.TEST");
    auto loaded = TlsCertificates::load({mixed});
    REQUIRE(loaded.ok());
    REQUIRE((*loaded)->certificates().size() == 1);
    CHECK((*loaded)->certificates()[0].names ==
          std::vector<std::string>{"mixed.example.test", "*.wild.example.test"});
    CHECK(cn_of((*loaded)->context_for("mixed.example.test")) == "cert-mixed");
    CHECK(cn_of((*loaded)->context_for("www.wild.example.test")) == "cert-mixed");
}

TEST_CASE("TlsCertificates: the common name stands in for a certificate with no DNS name") {
    test::TempDir dir;
    SUBCASE("no subject alternative name at all") {
        const auto files = write_pair(dir.path(), "cn", "Legacy.Example.TEST", "");
        auto loaded = TlsCertificates::load({files});
        REQUIRE(loaded.ok());
        REQUIRE((*loaded)->certificates().size() == 1);
        CHECK((*loaded)->certificates()[0].names ==
              std::vector<std::string>{"legacy.example.test"});
        CHECK(cn_of((*loaded)->context_for("legacy.example.test")) == "Legacy.Example.TEST");
    }
    SUBCASE("only an IP address as subject alternative name") {
        const auto files = write_pair(dir.path(), "ip", "ip.example.test", "IP:127.0.0.1");
        auto loaded = TlsCertificates::load({files});
        REQUIRE(loaded.ok());
        CHECK((*loaded)->certificates()[0].names == std::vector<std::string>{"ip.example.test"});
        CHECK((*loaded)->covers("ip.example.test"));
    }
    SUBCASE("the common name is ignored when there is a DNS name") {
        const auto files =
            write_pair(dir.path(), "both", "cn.example.test", "DNS:san.example.test");
        auto loaded = TlsCertificates::load({files});
        REQUIRE(loaded.ok());
        CHECK((*loaded)->certificates()[0].names == std::vector<std::string>{"san.example.test"});
        CHECK((*loaded)->covers("san.example.test"));
        CHECK_FALSE((*loaded)->covers("cn.example.test"));
    }
}

namespace {

// A pair written as the agent writes the ACME files: DIR/SUB/NAME.key, then NAME.crt.
CertificateFiles write_managed(const std::filesystem::path& acme, const std::string& sub,
                               const std::string& name, const std::string& cn,
                               const std::string& san) {
    std::filesystem::create_directories(acme / sub);
    return write_pair(acme / sub, name, cn, san);
}

struct Handshake {
    bool ok = false;
    SSL_CTX* context = nullptr; // the server's, at the end
    std::string cn;             // of the certificate the client was shown
    std::string protocol;       // ALPN chosen
};

// One in-memory handshake (SSL over a BIO pair) with a server context;
// `alpn` in wire format, empty for none.
Handshake handshake_with(SSL_CTX* server_context, const char* sni, std::string_view alpn,
                         int max_version = TLS1_3_VERSION) {
    SSL_CTX* client_context = SSL_CTX_new(TLS_client_method());
    REQUIRE(client_context != nullptr);
    SSL_CTX_set_verify(client_context, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_max_proto_version(client_context, max_version);
    if (!alpn.empty())
        REQUIRE(SSL_CTX_set_alpn_protos(client_context,
                                        reinterpret_cast<const unsigned char*>(alpn.data()),
                                        static_cast<unsigned>(alpn.size())) == 0);
    SSL* client = SSL_new(client_context);
    SSL* server = SSL_new(server_context);
    REQUIRE(client != nullptr);
    REQUIRE(server != nullptr);
    if (sni != nullptr)
        REQUIRE(SSL_set_tlsext_host_name(client, sni) == 1);
    BIO* client_bio = nullptr;
    BIO* server_bio = nullptr;
    REQUIRE(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0) == 1);
    SSL_set_bio(client, client_bio, client_bio);
    SSL_set_bio(server, server_bio, server_bio);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    bool client_done = false, server_done = false, failed = false;
    for (int round = 0; round < 100 && !failed && !(client_done && server_done); ++round) {
        for (auto [ssl, done] :
             {std::pair{client, &client_done}, std::pair{server, &server_done}}) {
            if (*done || failed)
                continue;
            const int rc = SSL_do_handshake(ssl);
            if (rc == 1)
                *done = true;
            else if (SSL_get_error(ssl, rc) != SSL_ERROR_WANT_READ)
                failed = true;
        }
    }
    ERR_clear_error();
    Handshake out;
    out.ok = client_done && server_done && !failed;
    if (out.ok) {
        X509* shown = SSL_get1_peer_certificate(client);
        out.cn = cn_of(shown);
        X509_free(shown);
        const unsigned char* chosen = nullptr;
        unsigned int length = 0;
        SSL_get0_alpn_selected(client, &chosen, &length);
        out.protocol.assign(reinterpret_cast<const char*>(chosen), length);
        out.context = SSL_get_SSL_CTX(server);
    }
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(client_context);
    return out;
}

const std::string k_http = std::string("\x02h2\x08http/1.1", 12);
const std::string k_acme = std::string("\x0a"
                                       "acme-tls/1",
                                       11);

} // namespace

TEST_CASE(
    "TlsCertificates: the SNI callback switches a handshake to the certificate for the name") {
    test::TempDir dir;
    const auto a = write_pair(dir.path(), "a", "cert-a", "DNS:a.example.test");
    const auto b = write_pair(dir.path(), "b", "cert-b", "DNS:b.example.test,DNS:*.b.example.test");
    auto loaded = TlsCertificates::load({a, b});
    REQUIRE(loaded.ok());
    const TlsCertificates& certificates = **loaded;

    // One in-memory handshake: the CN the client was shown, the context the
    // server ended with and the protocol chosen.
    auto handshake = [&](const char* sni) {
        const auto shown = handshake_with(certificates.default_context(), sni, k_http);
        REQUIRE(shown.ok);
        return std::tuple{shown.cn, shown.context, shown.protocol};
    };

    SUBCASE("a name of the second certificate") {
        auto [cn, context, protocol] = handshake("www.b.example.test");
        CHECK(cn == "cert-b");
        CHECK(context == certificates.context_for("b.example.test"));
        CHECK(protocol == "http/1.1");
    }
    SUBCASE("an upper-case name is matched as lower-case") {
        auto [cn, context, protocol] = handshake("B.Example.TEST");
        CHECK(cn == "cert-b");
    }
    SUBCASE("no name: the default certificate") {
        auto [cn, context, protocol] = handshake(nullptr);
        CHECK(cn == "cert-a");
        CHECK(context == certificates.default_context());
    }
    SUBCASE("a name no certificate covers: the default certificate") {
        auto [cn, context, protocol] = handshake("nobody.example.test");
        CHECK(cn == "cert-a");
    }
}

TEST_CASE("TlsCertificates with an ACME dir: managed certificates after the static ones") {
    test::TempDir dir;
    const auto acme = dir.path() / "acme";
    const auto a =
        write_managed(acme, "certs", "a.example.test", "managed-a", "DNS:a.example.test");
    write_managed(acme, "certs", "_.wild.example.test", "managed-wild", "DNS:*.wild.example.test");

    SUBCASE("each pair of certs/ is loaded; a wildcard's file is _.DOMAIN") {
        auto loaded = TlsCertificates::load({}, acme);
        REQUIRE(loaded.ok());
        const auto& certificates = **loaded;
        // In the byte order of the file names ('_' before the letters).
        REQUIRE(certificates.certificates().size() == 2);
        CHECK(certificates.certificates()[0].names ==
              std::vector<std::string>{"*.wild.example.test"});
        CHECK(certificates.certificates()[1].cert_path == a.cert);
        CHECK(cn_of(certificates.context_for("a.example.test")) == "managed-a");
        CHECK(cn_of(certificates.context_for("www.wild.example.test")) == "managed-wild");
        CHECK(certificates.covers("a.example.test"));
        CHECK_FALSE(certificates.covers("b.example.test"));
        CHECK(certificates.skipped().empty());
        // The first managed one is the default, for no name and names not covered.
        CHECK(cn_of(certificates.default_context()) == "managed-wild");
        CHECK(handshake_with(certificates.default_context(), "a.example.test", k_http).cn ==
              "managed-a");
        CHECK(handshake_with(certificates.default_context(), "nobody.example.test", k_http).cn ==
              "managed-wild");
    }
    SUBCASE("a pair that does not load is left out, said in skipped(); the others load") {
        const auto bad =
            write_managed(acme, "certs", "bad.example.test", "managed-bad", "DNS:bad.example.test");
        const auto other = write_pair(dir.path(), "other", "other", "DNS:other.example.test");
        std::filesystem::copy_file(other.key, bad.key,
                                   std::filesystem::copy_options::overwrite_existing);
        std::ofstream(acme / "certs" / "junk.example.test.crt") << "half a certif";
        std::ofstream(acme / "certs" / "junk.example.test.key") << "-----BEGIN PRIVATE KEY-----\n";
        std::ofstream(acme / "certs" / "nokey.example.test.crt") << "whatever";
        std::ofstream(acme / "certs" / "Not A Name.crt") << "whatever";
        // A key waiting for its certificate (the agent writes it first), a temporary file.
        std::filesystem::copy_file(a.key, acme / "certs" / "next.example.test.key");
        std::filesystem::copy_file(a.cert, acme / "certs" / "next.example.test.crt.tmp");

        auto loaded = TlsCertificates::load({}, acme);
        REQUIRE(loaded.ok());
        const auto& certificates = **loaded;
        CHECK(certificates.certificates().size() == 2);
        CHECK(certificates.covers("a.example.test"));
        CHECK(certificates.covers("x.wild.example.test"));
        CHECK_FALSE(certificates.covers("bad.example.test"));
        const auto& skipped = certificates.skipped();
        std::string all;
        for (const auto& line : skipped)
            all += line + "\n";
        INFO(all);
        CHECK(skipped.size() == 4);
        CHECK(contains(all, "the TLS key " + bad.key + " does not belong to the certificate " +
                                bad.cert));
        CHECK(contains(all, "junk.example.test.crt is not a PEM file"));
        CHECK(contains(all, "nokey.example.test.crt: no key beside it"));
        CHECK(contains(all, "Not A Name.crt: not a domain's certificate file"));
        CHECK_FALSE(contains(all, "next.example.test"));
    }
    SUBCASE("a name a static certificate covers keeps the static one") {
        const auto stat = write_pair(dir.path(), "static", "static-a",
                                     "DNS:a.example.test,DNS:static.example.test");
        auto loaded = TlsCertificates::load({stat}, acme);
        REQUIRE(loaded.ok());
        CHECK(cn_of((*loaded)->context_for("a.example.test")) == "static-a");
        CHECK(cn_of((*loaded)->context_for("www.wild.example.test")) == "managed-wild");
        CHECK(cn_of((*loaded)->default_context()) == "static-a");
        CHECK((*loaded)->certificates().size() == 3);
    }
    SUBCASE("a static pair that fails still fails the whole load") {
        const auto missing = (dir.path() / "missing.crt").string();
        auto loaded = TlsCertificates::load({{missing, a.key}}, acme);
        REQUIRE_FALSE(loaded.ok());
        CHECK(contains(loaded.error().message, "cannot read the TLS certificate " + missing));
    }
}

TEST_CASE("TlsCertificates with an ACME dir and no certificate: loads, and handshakes fail") {
    test::TempDir dir;
    for (const auto& acme : {dir.path() / "missing", dir.path() / "empty"}) {
        std::filesystem::create_directories(dir.path() / "empty" / "certs");
        auto loaded = TlsCertificates::load({}, acme);
        REQUIRE(loaded.ok());
        CHECK((*loaded)->certificates().empty());
        CHECK((*loaded)->skipped().empty());
        REQUIRE((*loaded)->default_context() != nullptr);
        CHECK(SSL_CTX_get0_certificate((*loaded)->default_context()) == nullptr);
        CHECK_FALSE((*loaded)->covers("a.example.test"));
        CHECK_FALSE(handshake_with((*loaded)->default_context(), "a.example.test", k_http).ok);
        CHECK_FALSE(handshake_with((*loaded)->default_context(), nullptr, {}).ok);
    }
    // The strict load of the static files alone still wants one.
    CHECK(contains(load_error({}), "no TLS certificate given"));
}

TEST_CASE("TlsCertificates: TLS-ALPN-01, acme-tls/1 gets the challenge certificate") {
    test::TempDir dir;
    const auto acme = dir.path() / "acme";
    write_managed(acme, "certs", "a.example.test", "managed-a", "DNS:a.example.test");
    write_managed(acme, "tls-alpn-01", "a.example.test", "challenge-a", "DNS:a.example.test");
    write_managed(acme, "tls-alpn-01", "new.example.test", "challenge-new", "DNS:new.example.test");
    auto loaded = TlsCertificates::load({}, acme);
    REQUIRE(loaded.ok());
    const auto& certificates = **loaded;
    REQUIRE(certificates.challenges().size() == 2);
    CHECK(certificates.challenges()[0].names == std::vector<std::string>{"a.example.test"});
    CHECK(certificates.challenge_for("new.example.test") != nullptr);
    // A challenge certificate covers no name for the clients of the apps.
    CHECK_FALSE(certificates.covers("new.example.test"));
    SSL_CTX* server = certificates.default_context();

    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
        CAPTURE(version);
        // acme-tls/1 for a name with a challenge: its certificate, acme-tls/1 chosen.
        auto shown = handshake_with(server, "a.example.test", k_acme, version);
        CHECK(shown.ok);
        CHECK(shown.cn == "challenge-a");
        CHECK(shown.protocol == "acme-tls/1");
        shown = handshake_with(server, "New.Example.Test", k_acme, version);
        CHECK(shown.ok);
        CHECK(shown.cn == "challenge-new");
        CHECK(shown.protocol == "acme-tls/1");
        // http/1.1 or no ALPN for the same name: the managed certificate.
        shown = handshake_with(server, "a.example.test", k_http, version);
        CHECK(shown.ok);
        CHECK(shown.cn == "managed-a");
        CHECK(shown.protocol == "http/1.1");
        shown = handshake_with(server, "a.example.test", {}, version);
        CHECK(shown.ok);
        CHECK(shown.cn == "managed-a");
        CHECK(shown.protocol.empty());
        // acme-tls/1 for a name without a challenge, or without a name: refused.
        CHECK_FALSE(handshake_with(server, "other.example.test", k_acme, version).ok);
        CHECK_FALSE(handshake_with(server, nullptr, k_acme, version).ok);
    }
    SUBCASE("a challenge pair that does not load is left out") {
        const auto bad = write_managed(acme, "tls-alpn-01", "bad.example.test", "challenge-bad",
                                       "DNS:bad.example.test");
        std::filesystem::copy_file(acme / "certs" / "a.example.test.key", bad.key,
                                   std::filesystem::copy_options::overwrite_existing);
        auto again = TlsCertificates::load({}, acme);
        REQUIRE(again.ok());
        CHECK((*again)->challenge_for("bad.example.test") == nullptr);
        REQUIRE((*again)->skipped().size() == 1);
        CHECK(contains((*again)->skipped()[0], "does not belong to the certificate " + bad.cert));
        CHECK(handshake_with((*again)->default_context(), "a.example.test", k_acme).cn ==
              "challenge-a");
    }
    SUBCASE("the static TLS loader of the agent's API refuses acme-tls/1 too") {
        const auto api = write_pair(dir.path(), "api", "api", "IP:127.0.0.1");
        auto only = TlsCertificates::load({api}, agent::proxy::HostNames::optional);
        REQUIRE(only.ok());
        CHECK_FALSE(handshake_with((*only)->default_context(), "a.example.test", k_acme).ok);
        CHECK(handshake_with((*only)->default_context(), "a.example.test", k_http).cn == "api");
    }
}

TEST_CASE("acme::stamps: a certificate added, renamed over or removed changes them") {
    test::TempDir dir;
    const auto acme = dir.path();
    CHECK(agent::proxy::acme::stamps(acme).empty()); // no certs/ yet
    const auto a = write_managed(acme, "certs", "a.example.test", "a", "DNS:a.example.test");
    const auto first = agent::proxy::acme::stamps(acme);
    CHECK(contains(first, "certs/a.example.test.crt "));
    CHECK_FALSE(contains(first, "certs/a.example.test.key ")); // written before its certificate
    CHECK(agent::proxy::acme::stamps(acme) == first);
    // A renewal half done (a new key, the old certificate) changes nothing yet.
    {
        std::ifstream in(a.key);
        std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(a.key + ".new") << key;
        std::filesystem::rename(a.key + ".new", a.key);
    }
    CHECK(agent::proxy::acme::stamps(acme) == first);

    // Files that are no certificate or key do not count: the agent's temporary files.
    std::ofstream(acme / "certs" / "b.example.test.crt.tmp") << "x";
    std::filesystem::create_directories(acme / "http-01");
    std::ofstream(acme / "http-01" / "token") << "x";
    CHECK(agent::proxy::acme::stamps(acme) == first);

    write_managed(acme, "tls-alpn-01", "b.example.test", "b", "DNS:b.example.test");
    const auto second = agent::proxy::acme::stamps(acme);
    CHECK(second != first);
    CHECK(contains(second, "tls-alpn-01/b.example.test.crt "));

    // Renewed: a new file renamed over the old one (kept alive under another
    // name, so that its inode is not reused at once).
    std::filesystem::create_hard_link(a.cert, a.cert + ".old");
    std::filesystem::copy_file(a.cert + ".old", a.cert + ".new");
    std::filesystem::rename(a.cert + ".new", a.cert);
    const auto third = agent::proxy::acme::stamps(acme);
    CHECK(third != second);

    std::filesystem::remove(acme / "tls-alpn-01" / "b.example.test.crt");
    CHECK(agent::proxy::acme::stamps(acme) != third);
}

TEST_CASE("acme http-01: the token of a challenge path, and its answer read from the file") {
    using agent::proxy::acme::http_token;
    using agent::proxy::acme::read_http_answer;
    CHECK(http_token("/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0") ==
          "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0");
    CHECK(http_token("/.well-known/acme-challenge/a_b-C9") == "a_b-C9");
    CHECK(http_token("/.well-known/acme-challenge/" + std::string(128, 'x')).size() == 128);
    for (const std::string& target : std::vector<std::string>{
             "/.well-known/acme-challenge/", "/.well-known/acme-challenge/" + std::string(129, 'x'),
             "/.well-known/acme-challenge/..%2f..%2fetc%2fpasswd", "/.well-known/acme-challenge/..",
             "/.well-known/acme-challenge/a/b", "/.well-known/acme-challenge/a.b",
             "/.well-known/acme-challenge/tok?x=1", "/.well-known/acme-challenge/tok%41",
             "//.well-known/acme-challenge/tok", "/.well-known/acme-challenge//tok",
             "http://x/.well-known/acme-challenge/tok", "/"}) {
        CAPTURE(target);
        CHECK(http_token(target).empty());
    }

    test::TempDir dir;
    const auto http = dir.path() / "http-01";
    std::filesystem::create_directories(http / "dir");
    std::ofstream(http / "tok1") << "tok1.thumbprint";
    std::ofstream(dir.path() / "secret") << "secret";
    std::filesystem::create_symlink(dir.path() / "secret", http / "link");
    std::ofstream(http / "big") << std::string(agent::proxy::acme::k_max_http_answer + 1, 'x');
    std::ofstream(http / "limit") << std::string(agent::proxy::acme::k_max_http_answer, 'y');

    CHECK(read_http_answer(http, "tok1") == std::optional<std::string>("tok1.thumbprint"));
    CHECK(read_http_answer(http, "limit")->size() == agent::proxy::acme::k_max_http_answer);
    CHECK_FALSE(read_http_answer(http, "missing").has_value());
    CHECK_FALSE(read_http_answer(http, "link").has_value()); // a link is not followed
    CHECK_FALSE(read_http_answer(http, "dir").has_value());
    CHECK_FALSE(read_http_answer(http, "big").has_value());
    CHECK_FALSE(read_http_answer(http, "../secret").has_value());
    CHECK_FALSE(read_http_answer(http, "").has_value());
    CHECK_FALSE(read_http_answer(dir.path() / "nowhere", "tok1").has_value());
}

TEST_CASE("TlsCertificates: certificate loading errors name the file and the reason") {
    test::TempDir dir;
    const auto good = write_pair(dir.path(), "good", "cert-good", "DNS:good.example.test");

    SUBCASE("an empty list") {
        CHECK(contains(load_error({}), "no TLS certificate"));
    }
    SUBCASE("a missing certificate file") {
        const auto missing = (dir.path() / "missing.crt").string();
        const auto message = load_error({{missing, good.key}});
        INFO(message);
        CHECK(contains(message, "cannot read the TLS certificate " + missing +
                                    ": No such file or directory"));
    }
    SUBCASE("a missing key file") {
        const auto missing = (dir.path() / "missing.key").string();
        const auto message = load_error({{good.cert, missing}});
        INFO(message);
        CHECK(contains(message,
                       "cannot read the TLS key " + missing + ": No such file or directory"));
    }
    SUBCASE("a bad pair after a good one still fails the whole load") {
        const auto missing = (dir.path() / "missing.crt").string();
        const auto message = load_error({good, {missing, good.key}});
        INFO(message);
        CHECK(contains(message, "cannot read the TLS certificate " + missing));
    }
    SUBCASE("a key of the same type that belongs to another certificate") {
        const auto other = write_pair(dir.path(), "other", "cert-other", "DNS:other.example.test");
        const auto message = load_error({{good.cert, other.key}});
        INFO(message);
        CHECK(contains(message, "the TLS key " + other.key +
                                    " does not belong to the certificate " + good.cert));
    }
    SUBCASE("an RSA key for an EC certificate") {
        auto rsa = rsa_key();
        const auto rsa_path = (dir.path() / "rsa.key").string();
        write_key(rsa_path, rsa.get());
        const auto message = load_error({{good.cert, rsa_path}});
        INFO(message);
        CHECK(contains(message, "the TLS key " + rsa_path + " does not belong to the certificate " +
                                    good.cert));
    }
    SUBCASE("the key given as the certificate and the certificate as the key") {
        const auto message = load_error({{good.key, good.cert}});
        INFO(message);
        CHECK(contains(message, "cannot load the TLS certificate " + good.key));
    }
    SUBCASE("a certificate with neither a DNS name nor a common name") {
        const auto nameless = write_pair(dir.path(), "nameless", "", "");
        const auto message = load_error({nameless});
        INFO(message);
        CHECK(contains(message, "the TLS certificate " + nameless.cert + " names no host"));
    }
}

TEST_CASE("TlsCertificates: a certificate or key file that is not PEM is reported as such") {
    test::TempDir dir;
    const auto good = write_pair(dir.path(), "good", "cert-good", "DNS:good.example.test");

    SUBCASE("a certificate file that is not PEM") {
        const auto junk = (dir.path() / "junk.crt").string();
        std::ofstream(junk) << "this is not a certificate\n";
        const auto message = load_error({{junk, good.key}});
        INFO(message);
        CHECK(contains(message, "the TLS certificate " + junk + " is not a PEM file"));
    }
    SUBCASE("a key file that is not PEM") {
        const auto junk = (dir.path() / "junk.key").string();
        std::ofstream(junk) << "this is not a key\n";
        const auto message = load_error({{good.cert, junk}});
        INFO(message);
        CHECK(contains(message, "the TLS key " + junk + " is not a PEM file"));
    }
}

TEST_CASE("TlsCertificates: an encrypted certificate key fails without asking for a passphrase") {
    test::TempDir dir;
    auto key = ec_key();
    auto cert = make_cert(key.get(), "cert-locked", "DNS:locked.example.test");
    const CertificateFiles files{(dir.path() / "locked.crt").string(),
                                 (dir.path() / "locked.key").string()};
    write_cert(files.cert, cert.get());
    write_key(files.key, key.get(), "correct horse");

    // Were OpenSSL left to ask, it would prompt on /dev/tty, or with no
    // terminal read stdin: offer the passphrase there, so that asking would
    // make the load succeed (and on a terminal, the prompt shows the bug).
    int saved_stdin = dup(STDIN_FILENO);
    REQUIRE(saved_stdin >= 0);
    int pipe_fds[2];
    REQUIRE(pipe(pipe_fds) == 0);
    const std::string passphrase = "correct horse\n";
    REQUIRE(write(pipe_fds[1], passphrase.data(), passphrase.size()) ==
            static_cast<ssize_t>(passphrase.size()));
    close(pipe_fds[1]);
    REQUIRE(dup2(pipe_fds[0], STDIN_FILENO) == STDIN_FILENO);
    close(pipe_fds[0]);
    clearerr(stdin);
    auto loaded = TlsCertificates::load({files});
    dup2(saved_stdin, STDIN_FILENO);
    close(saved_stdin);
    clearerr(stdin);

    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.error().kind == common::ErrorKind::config);
    const auto& message = loaded.error().message;
    INFO(message);
    CHECK(contains(message, "the TLS key " + files.key + " is encrypted"));
    CHECK(contains(message, "without a passphrase"));
    // Not mistaken for a file that is not PEM at all.
    CHECK_FALSE(contains(message, "not a PEM file"));
}

TEST_CASE("TlsCertificates: the API's certificate may name no host, and has its fingerprint") {
    test::TempDir dir;
    const auto ip_only = write_pair(dir.path(), "ip", "", "IP:127.0.0.1");
    auto loaded = TlsCertificates::load({ip_only}, agent::proxy::HostNames::optional);
    REQUIRE(loaded.ok());
    const auto& info = (*loaded)->certificates().front();
    CHECK(info.names.empty());
    CHECK(info.fingerprint ==
          common::x509_fingerprint(SSL_CTX_get0_certificate((*loaded)->default_context())));
    CHECK(info.fingerprint.rfind("sha256:", 0) == 0);
    CHECK(info.fingerprint.size() == 7 + 95);
}

TEST_CASE("ApiCertificate: a pair changed on disk is loaded again; a broken one is not") {
    test::TempDir dir;
    const auto first = write_pair(dir.path(), "first", "agent-1", "IP:127.0.0.1");
    const auto second = write_pair(dir.path(), "second", "agent-2", "IP:127.0.0.1");
    const CertificateFiles live{(dir.path() / "live.crt").string(),
                                (dir.path() / "live.key").string()};
    // Replaced as a renewal does: a new file renamed over the old one. (The
    // old one is kept under another name, so that its inode is not reused
    // within the file system's timestamp granularity.)
    int version = 0;
    auto install = [&](const std::string& from, const std::string& to) {
        std::error_code ec;
        std::filesystem::create_hard_link(to, to + "." + std::to_string(++version), ec);
        std::filesystem::copy_file(from, to + ".new");
        std::filesystem::rename(to + ".new", to);
    };
    install(first.cert, live.cert);
    install(first.key, live.key);
    auto certificate = agent::api::ApiCertificate::load(live);
    REQUIRE(certificate.ok());
    auto& api = **certificate;
    CHECK(cn_of(api.current()->default_context()) == "agent-1");
    const auto first_fingerprint = api.fingerprint();

    install(second.cert, live.cert);
    install(second.key, live.key);
    CHECK(cn_of(api.current()->default_context()) == "agent-2");
    CHECK(api.fingerprint() != first_fingerprint);

    install(first.cert, live.cert); // with the second key: a pair that does not load
    CHECK(cn_of(api.current()->default_context()) == "agent-2");
    install(first.key, live.key);
    CHECK(cn_of(api.current()->default_context()) == "agent-1");
    CHECK(api.fingerprint() == first_fingerprint);
}

namespace {

// serve_tls_connection on one end of a socket pair, with the API certificate
// of a fresh self-signed pair; the test is the client on the other end.
struct TlsServerFixture {
    test::TempDir dir;
    std::shared_ptr<agent::api::ApiCertificate> certificate;
    agent::api::Router router;
    agent::api::ConnectionOptions options;
    int client = -1;
    std::future<void> served;

    TlsServerFixture() {
        auto loaded =
            agent::api::ApiCertificate::load(write_pair(dir.path(), "api", "api", "IP:127.0.0.1"));
        REQUIRE(loaded.ok());
        certificate = *loaded;
        router.add("GET", "/v1/ping", [](const agent::api::Request&) {
            agent::api::Response response;
            response.body = R"({"pong":true})";
            return response;
        });
    }
    void start() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
        client = fds[0];
        served = std::async(std::launch::async, [this, fd = fds[1]] {
            agent::api::serve_tls_connection(fd, *certificate, router, options);
            ::close(fd);
        });
    }
    // True when the server finished within `limit`.
    bool finished_within(std::chrono::milliseconds limit) {
        return served.wait_for(limit) == std::future_status::ready;
    }
    ~TlsServerFixture() {
        if (client >= 0)
            ::close(client);
    }
};

// Everything the peer sends until it closes, read with `read` (-1/0 ends).
template <class Read> std::string read_all(Read read) {
    std::string out;
    char buffer[4096];
    for (int n; (n = read(buffer, static_cast<int>(sizeof buffer))) > 0;)
        out.append(buffer, static_cast<std::size_t>(n));
    return out;
}

std::size_t count(const std::string& text, const std::string& part) {
    std::size_t n = 0;
    for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1))
        ++n;
    return n;
}

} // namespace

TEST_CASE("serve_tls_connection: requests that arrive in one TLS record are all answered") {
    TlsServerFixture server;
    server.options.idle_timeout = std::chrono::seconds(5);
    server.start();
    SSL_CTX* context = SSL_CTX_new(TLS_client_method());
    REQUIRE(context != nullptr);
    SSL* ssl = SSL_new(context);
    SSL_set_fd(ssl, server.client);
    REQUIRE(SSL_connect(ssl) == 1);
    X509* seen = SSL_get1_peer_certificate(ssl);
    REQUIRE(seen != nullptr);
    CHECK(common::x509_fingerprint(seen) == server.certificate->fingerprint());
    X509_free(seen);
    CHECK(SSL_version(ssl) >= TLS1_2_VERSION);

    // The second request sits decrypted in OpenSSL's buffer while the socket
    // has nothing to read: it must be answered at once, not after the idle timeout.
    const auto started = std::chrono::steady_clock::now();
    const std::string requests = "GET /v1/ping HTTP/1.1\r\nHost: a\r\n\r\n"
                                 "GET /v1/ping HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    REQUIRE(SSL_write(ssl, requests.data(), static_cast<int>(requests.size())) ==
            static_cast<int>(requests.size()));
    const auto answers = read_all([ssl](char* b, int n) { return SSL_read(ssl, b, n); });
    CHECK(count(answers, "HTTP/1.1 200 OK") == 2);
    CHECK(count(answers, R"({"pong":true})") == 2);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(3));
    CHECK(server.finished_within(std::chrono::seconds(5)));
    SSL_free(ssl);
    SSL_CTX_free(context);
}

TEST_CASE("serve_tls_connection: a client that never handshakes is let go at the deadline") {
    TlsServerFixture server;
    server.options.handshake_timeout = std::chrono::milliseconds(200);
    const auto started = std::chrono::steady_clock::now();
    server.start();
    REQUIRE(server.finished_within(std::chrono::seconds(5)));
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(took >= std::chrono::milliseconds(150));
    CHECK(took < std::chrono::seconds(3));
}

TEST_CASE("serve_tls_connection: plain HTTP to the TLS port gets no HTTP answer") {
    TlsServerFixture server;
    server.start();
    const std::string request = "GET /v1/ping HTTP/1.1\r\nHost: a\r\n\r\n";
    REQUIRE(::send(server.client, request.data(), request.size(), 0) ==
            static_cast<ssize_t>(request.size()));
    REQUIRE(server.finished_within(std::chrono::seconds(5)));
    const auto answer =
        read_all([&](char* b, int n) { return static_cast<int>(::recv(server.client, b, n, 0)); });
    CHECK(answer.find("HTTP/1.1") == std::string::npos);
    CHECK(answer.find("pong") == std::string::npos);
}
