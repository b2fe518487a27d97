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

    ~TlsCertificates();
    TlsCertificates(const TlsCertificates&) = delete;
    TlsCertificates& operator=(const TlsCertificates&) = delete;

    // The context a handshake starts with; its SNI callback switches to
    // context_for(name). The callback refers to this object: keep it alive
    // as long as a connection made with the context is.
    SSL_CTX* default_context() const { return m_contexts.front(); }
    // The context whose certificate covers `host` (exact name first, then a
    // wildcard one label up), or nullptr.
    SSL_CTX* context_for(std::string_view host) const;
    // Whether some certificate covers `host` (lower-case, no port).
    bool covers(std::string_view host) const { return context_for(host) != nullptr; }
    const std::vector<CertificateInfo>& certificates() const { return m_info; }

  private:
    TlsCertificates() = default;

    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    using NameMap = std::unordered_map<std::string, SSL_CTX*, Hash, std::equal_to<>>;

    std::vector<SSL_CTX*> m_contexts; // owned
    std::vector<CertificateInfo> m_info;
    NameMap m_exact;    // "www.example.com"
    NameMap m_wildcard; // "example.com" for "*.example.com"
};

} // namespace agent::proxy
