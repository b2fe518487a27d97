#pragma once
// SHA-256 certificate fingerprints: what the agent logs and shows for its TLS
// certificate, and what deploy.toml pins (`fingerprint = "sha256:AB:CD:..."`).

#include <common/result.hpp>

#include <openssl/types.h>

#include <string>
#include <string_view>

namespace common {

// The canonical form, "sha256:" and 32 upper-case hex pairs joined by ':'.
// Accepts what `openssl x509 -noout -fingerprint -sha256` prints and its
// variations: any case, with or without the colons, with or without a
// "sha256:" or "SHA256 Fingerprint=" prefix. ErrorKind::usage saying what
// was expected otherwise.
Result<std::string> parse_fingerprint(std::string_view text);

// The canonical fingerprint of a DER-encoded certificate.
std::string der_fingerprint(std::string_view der);
// Of a parsed one (empty if it cannot be encoded).
std::string x509_fingerprint(X509* cert);

// "sha256 Fingerprint=AB:CD:...": how openssl prints a canonical fingerprint.
std::string openssl_fingerprint_form(std::string_view canonical);

} // namespace common
