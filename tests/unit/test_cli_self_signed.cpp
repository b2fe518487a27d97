// cli/self_signed: the certificate deployctl agent install --https makes for a server.
#include <cli/self_signed.hpp>

#include <doctest/doctest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <memory>

TEST_CASE("a self-signed certificate names the server and gives its fingerprint") {
    for (const std::string host : {"127.0.0.1", "web1.example.net", "::1"}) {
        CAPTURE(host);
        auto made = cli::make_self_signed(host);
        REQUIRE(made);
        CHECK(made->key_pem.find("BEGIN PRIVATE KEY") != std::string::npos);
        auto fingerprint = cli::pem_fingerprint(made->cert_pem);
        REQUIRE(fingerprint);
        CHECK(*fingerprint == made->fingerprint);
        CHECK(made->fingerprint.starts_with("sha256:"));
        std::unique_ptr<BIO, decltype(&BIO_free)> bio(
            BIO_new_mem_buf(made->cert_pem.data(), static_cast<int>(made->cert_pem.size())),
            BIO_free);
        std::unique_ptr<X509, decltype(&X509_free)> cert(
            PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
        REQUIRE(cert);
        const bool ip = host.find_first_not_of("0123456789.:") == std::string::npos;
        if (ip)
            CHECK(X509_check_ip_asc(cert.get(), host.c_str(), 0) == 1);
        else
            CHECK(X509_check_host(cert.get(), host.c_str(), host.size(), 0, nullptr) == 1);
    }
    CHECK(cli::make_self_signed("a")->fingerprint != cli::make_self_signed("a")->fingerprint);
    CHECK_FALSE(cli::pem_fingerprint("not a certificate"));
}
