#pragma once
// A self-signed certificate for an agent's HTTPS API (deployctl agent install --https):
// an ECDSA P-256 key and a certificate naming the server (an IP address or a DNS name),
// both PEM, and the certificate's SHA-256 fingerprint that clients pin.

#include <common/result.hpp>

#include <string>

namespace cli {

struct SelfSigned {
    std::string cert_pem;
    std::string key_pem;
    std::string fingerprint; // canonical "sha256:AB:..."
};

common::Result<SelfSigned> make_self_signed(const std::string& host, int days = 3650);

// The canonical fingerprint of the first certificate in `pem`; ErrorKind::config when there
// is none.
common::Result<std::string> pem_fingerprint(const std::string& pem);

} // namespace cli
