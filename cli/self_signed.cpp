#include <cli/self_signed.hpp>
#include <common/fingerprint.hpp>
#include <common/openssl.hpp>

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <memory>

namespace cli {

namespace {

using common::ErrorKind;

using common::OpenSslPtr;

common::Error failed(const char* what) {
    return common::openssl_error(fmt::format("cannot make a certificate: {} failed", what));
}

bool is_ip(const std::string& host) {
    unsigned char buffer[16];
    return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
           ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

} // namespace

common::Result<SelfSigned> make_self_signed(const std::string& host, int days) {
    OpenSslPtr<EVP_PKEY> key(EVP_EC_gen("P-256"));
    if (!key)
        return failed("EC key generation");
    OpenSslPtr<X509> cert(X509_new());
    if (!cert || X509_set_version(cert.get(), 2) != 1)
        return failed("X509_new");
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1)
        return failed("RAND_bytes");
    serial[0] &= 0x7f; // positive
    BIGNUM* number = BN_bin2bn(serial, sizeof serial, nullptr);
    const bool serial_set = number && BN_to_ASN1_INTEGER(number, X509_get_serialNumber(cert.get()));
    BN_free(number);
    if (!serial_set || !X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 24 * 3600) ||
        X509_set_pubkey(cert.get(), key.get()) != 1)
        return failed("filling the certificate");
    X509_NAME* name = X509_get_subject_name(cert.get());
    const auto cn = host.substr(0, 64);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(cert.get(), name) != 1)
        return failed("naming the certificate");
    const auto san = fmt::format("{}:{}", is_ip(host) ? "IP" : "DNS", host);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
    const bool added = ext && X509_add_ext(cert.get(), ext, -1) == 1;
    X509_EXTENSION_free(ext);
    if (!added)
        return failed("subjectAltName");
    if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0)
        return failed("signing");
    OpenSslPtr<BIO> cert_bio(BIO_new(BIO_s_mem()));
    OpenSslPtr<BIO> key_bio(BIO_new(BIO_s_mem()));
    if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1 ||
        PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
            1)
        return failed("PEM encoding");
    return SelfSigned{common::memory_bio_bytes(cert_bio.get()),
                      common::memory_bio_bytes(key_bio.get()),
                      common::x509_fingerprint(cert.get())};
}

common::Result<std::string> pem_fingerprint(const std::string& pem) {
    OpenSslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    OpenSslPtr<X509> cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!cert)
        return common::make_error(ErrorKind::config, "not a PEM certificate");
    return common::x509_fingerprint(cert.get());
}

} // namespace cli
