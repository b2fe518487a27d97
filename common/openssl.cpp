#include <common/openssl.hpp>

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

namespace common {

void OpenSslFree::operator()(EVP_PKEY* key) const {
    EVP_PKEY_free(key);
}
void OpenSslFree::operator()(X509* cert) const {
    X509_free(cert);
}
void OpenSslFree::operator()(BIO* bio) const {
    BIO_free(bio);
}

std::string memory_bio_bytes(BIO* bio) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

Error openssl_error(const std::string& what) {
    const unsigned long code = ERR_get_error();
    char reason[256] = "unknown error";
    if (code != 0)
        ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    return make_error(ErrorKind::internal, fmt::format("{}: {}", what, reason));
}

} // namespace common
