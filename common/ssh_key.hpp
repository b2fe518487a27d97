#pragma once
// OpenSSH public keys: the blob's algorithm name, its SHA256 fingerprint as ssh-keygen -l
// prints it, and a public key line ("ssh-ed25519 AAAA... comment") read back into its
// parts. deployctl checks host keys with them; deploy-agent keys manages push keys.

#include <common/result.hpp>

#include <string>
#include <string_view>

namespace common {

std::string base64(std::string_view bytes);
// "" when `text` is not base64.
std::string unbase64(std::string_view text);

// The key's algorithm name, read from the key blob ("ssh-ed25519"); empty when
// the blob is malformed.
std::string key_type_of(std::string_view blob);

// OpenSSH's fingerprint of a public key blob: "SHA256:" + unpadded base64.
std::string fingerprint_sha256(std::string_view blob);

struct PublicKey {
    std::string type;    // "ssh-ed25519"
    std::string base64;  // the blob, as written
    std::string comment; // "" when none
    std::string blob;    // decoded
};
// One public key line (a .pub file's): ErrorKind::usage saying what is wrong otherwise
// (not "TYPE BASE64 [COMMENT]", a type OpenSSH does not know, a blob of another type).
Result<PublicKey> parse_public_key(std::string_view line);

} // namespace common
