#pragma once
// Owning pointers for the OpenSSL objects the project makes (keys, certificates, memory
// BIOs), a memory BIO's bytes, and an error saying what OpenSSL reported.

#include <common/result.hpp>

#include <openssl/types.h>

#include <memory>
#include <string>

namespace common {

struct OpenSslFree {
    void operator()(EVP_PKEY* key) const;
    void operator()(X509* cert) const;
    void operator()(BIO* bio) const;
};
template <class T> using OpenSslPtr = std::unique_ptr<T, OpenSslFree>;

// What was written to a memory BIO (BIO_s_mem).
std::string memory_bio_bytes(BIO* bio);

// ErrorKind::internal: "WHAT: " and OpenSSL's first queued error; clears the queue.
Error openssl_error(const std::string& what);

} // namespace common
