#pragma once
// The cryptography of ACME (RFC 8555, RFC 8737, RFC 7515/7638): the account's
// EC P-256 key, JWS signatures (ES256) in the flattened JSON form ACME posts,
// the JWK thumbprint and key authorizations, a certificate's key and its CSR,
// and the self-signed certificate TLS-ALPN-01 validates. OpenSSL only.

#include <common/openssl.hpp>
#include <common/result.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace agent::acme {

// base64url without padding (RFC 4648 §5), as JOSE wants it.
std::string base64url(std::string_view bytes);
// The raw 32 bytes of SHA-256.
std::string sha256_bytes(std::string_view data);

// An EC P-256 private key: the account's, or a certificate's.
class EcKey {
  public:
    static common::Result<EcKey> generate();
    static common::Result<EcKey> from_pem(std::string_view pem);
    // Reads the key at `path`, or makes one and writes it there (0600, created
    // with O_EXCL: an existing file is never overwritten, a damaged one is an error).
    static common::Result<EcKey> load_or_create(const std::filesystem::path& path);

    std::string pem() const; // PKCS#8
    EVP_PKEY* get() const { return m_key.get(); }
    // {"crv":"P-256","kty":"EC","x":…,"y":…}
    const nlohmann::json& jwk() const { return m_jwk; }
    // RFC 7638: base64url(SHA-256 of the JWK's members in lexical order).
    const std::string& thumbprint() const { return m_thumbprint; }
    // ES256: the 64 bytes r || s of an ECDSA signature over SHA-256(data).
    common::Result<std::string> sign(std::string_view data) const;

  private:
    explicit EcKey(common::OpenSslPtr<EVP_PKEY> key);
    common::OpenSslPtr<EVP_PKEY> m_key;
    nlohmann::json m_jwk;
    std::string m_thumbprint;
};

// The flattened JWS ACME posts (RFC 8555 §6.2): a protected header with
// "alg":"ES256", `nonce`, `url` and either "kid" (an account URL) or, when
// `kid` is empty, the key's "jwk". An empty `payload` is POST-as-GET.
common::Result<std::string> sign_jws(const EcKey& key, const std::string& kid,
                                     const std::string& nonce, const std::string& url,
                                     std::string_view payload);

// External account binding (RFC 8555 §7.3.4): the account key's JWK signed
// with HS256 under the CA's MAC key (base64url, as CAs hand it out).
common::Result<nlohmann::json> external_account_binding(const EcKey& account,
                                                        const std::string& key_id,
                                                        const std::string& mac_key,
                                                        const std::string& url);

// TOKEN "." thumbprint (RFC 8555 §8.1).
std::string key_authorization(const std::string& token, const EcKey& account);
// The TXT record of DNS-01: base64url(SHA-256(key authorization)).
std::string dns01_value(const std::string& key_authorization);

// A certificate signing request for `names` (the first also as the subject's
// common name), signed with `key`, DER.
common::Result<std::string> make_csr(const EcKey& key, const std::vector<std::string>& names);

// RFC 8737: a self-signed certificate for `name` carrying the critical
// id-pe-acmeIdentifier extension with SHA-256(key authorization).
struct PemPair {
    std::string cert;
    std::string key;
};
common::Result<PemPair> tls_alpn_certificate(const std::string& name,
                                             const std::string& key_authorization);

// What a PEM chain's first certificate says.
struct CertificateSummary {
    std::vector<std::string> names; // DNS subject alternative names
    std::string issuer;             // the issuer's common name (else its whole name)
    std::chrono::system_clock::time_point not_before;
    std::chrono::system_clock::time_point not_after;
    std::string serial; // hex
};
common::Result<CertificateSummary> summarize_certificate(std::string_view pem);

} // namespace agent::acme
