#include <agent/api/connection.hpp>
#include <agent/api/router.hpp>
#include <agent/api/tls.hpp>
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
#include <string>
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

TEST_CASE(
    "TlsCertificates: the SNI callback switches a handshake to the certificate for the name") {
    test::TempDir dir;
    const auto a = write_pair(dir.path(), "a", "cert-a", "DNS:a.example.test");
    const auto b = write_pair(dir.path(), "b", "cert-b", "DNS:b.example.test,DNS:*.b.example.test");
    auto loaded = TlsCertificates::load({a, b});
    REQUIRE(loaded.ok());
    const TlsCertificates& certificates = **loaded;

    // One in-memory handshake; returns the CN the client was shown and the
    // context the server ended with.
    auto handshake = [&](const char* sni) {
        SSL_CTX* client_context = SSL_CTX_new(TLS_client_method());
        REQUIRE(client_context != nullptr);
        SSL_CTX_set_verify(client_context, SSL_VERIFY_NONE, nullptr);
        static constexpr unsigned char k_protocols[] = {2,   'h', '2', 8,   'h', 't',
                                                        't', 'p', '/', '1', '.', '1'};
        REQUIRE(SSL_CTX_set_alpn_protos(client_context, k_protocols, sizeof k_protocols) == 0);
        SSL* client = SSL_new(client_context);
        SSL* server = SSL_new(certificates.default_context());
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
        bool client_done = false, server_done = false;
        for (int round = 0; round < 100 && !(client_done && server_done); ++round) {
            if (!client_done) {
                const int rc = SSL_do_handshake(client);
                if (rc == 1)
                    client_done = true;
                else
                    REQUIRE(SSL_get_error(client, rc) == SSL_ERROR_WANT_READ);
            }
            if (!server_done) {
                const int rc = SSL_do_handshake(server);
                if (rc == 1)
                    server_done = true;
                else
                    REQUIRE(SSL_get_error(server, rc) == SSL_ERROR_WANT_READ);
            }
        }
        REQUIRE(client_done);
        REQUIRE(server_done);
        X509* shown = SSL_get1_peer_certificate(client);
        const std::string shown_cn = cn_of(shown);
        X509_free(shown);
        const unsigned char* alpn = nullptr;
        unsigned int alpn_length = 0;
        SSL_get0_alpn_selected(client, &alpn, &alpn_length);
        const std::string protocol(reinterpret_cast<const char*>(alpn), alpn_length);
        SSL_CTX* final_context = SSL_get_SSL_CTX(server);
        SSL_free(client);
        SSL_free(server);
        SSL_CTX_free(client_context);
        return std::tuple{shown_cn, final_context, protocol};
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
