#pragma once
// The certificates deploy-proxy terminates TLS with: one OpenSSL context per
// certificate/key pair, and the choice among them by the name the client asks
// for (SNI). Pure OpenSSL, no Asio: the agent loads the same files with it to
// refuse a bad configuration before it starts the proxy, and serves its own
// API's TLS with it (agent/api/tls.hpp).

#include <common/result.hpp>

#include <openssl/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace agent::proxy {

struct CertificateFiles {
    std::string cert; // PEM: the certificate, then its intermediates
    std::string key;  // PEM private key (unencrypted)
};

struct CertificateInfo {
    std::string cert_path;
    std::vector<std::string> names; // DNS names it is valid for, lower-case ("*.example.com")
    std::chrono::system_clock::time_point not_after;
    std::string fingerprint; // of the leaf, "sha256:AB:CD:..." (common/fingerprint.hpp)
};

// Whether every certificate must name a host: the proxy chooses among its
// certificates by name; the agent's API has one, often for an IP address only.
enum class HostNames { required, optional };

// What identifies a version of the certificate files (inode, mtime, size of
// each): a renewal that replaces them, or the symlinks to them, changes it.
std::vector<std::int64_t> file_stamps(const std::vector<CertificateFiles>& files);

class TlsCertificates {
  public:
    // Loads every pair and checks each key matches its certificate. The first
    // pair is the default: it answers clients that send no name, or one no
    // certificate covers. ErrorKind::config naming the file and OpenSSL's reason.
    static common::Result<std::shared_ptr<const TlsCertificates>>
    load(const std::vector<CertificateFiles>& files, HostNames names = HostNames::required);

    // deploy-proxy --acme-dir (acme.hpp): `files` as above (maybe none; any
    // that fails fails the load), then the certificates the agent manages
    // under acme_dir/certs (a name both cover keeps the one of `files`), then
    // the TLS-ALPN-01 challenge certificates of acme_dir/tls-alpn-01. A managed
    // or challenge pair that does not load is left out and described in
    // skipped(). With no certificate at all the default context has none:
    // every handshake fails (the listener still listens).
    static common::Result<std::shared_ptr<const TlsCertificates>>
    load(const std::vector<CertificateFiles>& files, const std::filesystem::path& acme_dir);

    ~TlsCertificates();
    TlsCertificates(const TlsCertificates&) = delete;
    TlsCertificates& operator=(const TlsCertificates&) = delete;

    // The context a handshake starts with; its SNI callback switches to
    // context_for(name). The callback refers to this object: keep it alive
    // as long as a connection made with the context is.
    // A ClientHello offering ALPN acme-tls/1 switches to challenge_for(its
    // name), and fails without one; acme-tls/1 is then the protocol chosen.
    SSL_CTX* default_context() const { return m_default; }
    // The context whose certificate covers `host` (exact name first, then a
    // wildcard one label up), or nullptr.
    SSL_CTX* context_for(std::string_view host) const;
    // Whether some certificate covers `host` (lower-case, no port).
    bool covers(std::string_view host) const { return context_for(host) != nullptr; }
    const std::vector<CertificateInfo>& certificates() const { return m_info; }

    // The TLS-ALPN-01 challenge certificate for `host` (lower-case), or nullptr.
    SSL_CTX* challenge_for(std::string_view host) const;
    // The challenge certificates loaded, in the order of their names.
    const std::vector<CertificateInfo>& challenges() const { return m_challenge_info; }
    // The managed files left out, one line each: the file and the reason.
    const std::vector<std::string>& skipped() const { return m_skipped; }

  private:
    TlsCertificates() = default;
    // Loads `files` into a new context, owned by this object.
    common::Result<SSL_CTX*> add_context(const CertificateFiles& files);
    // Makes a context with the settings every one has, owned by this object.
    common::Result<SSL_CTX*> new_context();
    // The certificate of `context` covers its names, unless an earlier one does.
    common::Status index(SSL_CTX* context, const std::string& cert_path, HostNames names);

    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    using NameMap = std::unordered_map<std::string, SSL_CTX*, Hash, std::equal_to<>>;

    std::vector<SSL_CTX*> m_contexts; // owned
    SSL_CTX* m_default = nullptr;     // the first certificate's, else one without any
    std::vector<CertificateInfo> m_info;
    NameMap m_exact;    // "www.example.com"
    NameMap m_wildcard; // "example.com" for "*.example.com"
    NameMap m_challenges; // "www.example.com": its TLS-ALPN-01 certificate
    std::vector<CertificateInfo> m_challenge_info;
    std::vector<std::string> m_skipped;
};

} // namespace agent::proxy
