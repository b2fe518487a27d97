#include <agent/proxy/acme.hpp>
#include <agent/proxy/client_hello.hpp>
#include <agent/proxy/tls_certificates.hpp>
#include <common/ascii.hpp>
#include <common/fingerprint.hpp>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sys/stat.h>

namespace agent::proxy {

namespace {

using common::ErrorKind;
using common::make_error;

// OpenSSL's queued errors as one line (and the queue emptied).
std::string openssl_reason() {
    std::string out;
    while (unsigned long code = ERR_get_error()) {
        char text[256];
        ERR_error_string_n(code, text, sizeof text);
        // "error:0A080009:SSL routines::PEM lib": keep the part after the last ':'.
        std::string_view line(text);
        if (auto at = line.rfind(':'); at != std::string_view::npos)
            line.remove_prefix(at + 1);
        if (out.find(line) != std::string::npos)
            continue; // OpenSSL repeats itself on some paths
        if (!out.empty())
            out += ": ";
        out += line;
    }
    return out.empty() ? "unknown OpenSSL error" : out;
}

// What the text of a PEM file says about it before OpenSSL is asked to load
// it: its own errors for these cases are cryptic ("no start line: PEM lib",
// "unsupported", "bad decrypt").
enum class PemKind { pem, not_pem, encrypted_key };

common::Result<PemKind> inspect_pem(const std::string& path, std::string_view what) {
    std::ifstream file(path, std::ios::binary);
    if (!file)
        return make_error(ErrorKind::config, fmt::format("cannot read the TLS {} {}: {}", what,
                                                         path, std::strerror(errno)));
    std::string text;
    text.resize(1 << 20); // certificates and keys are a few KiB; a chain stays far below 1 MiB
    file.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(file.gcount()));
    if (text.find("-----BEGIN ") == std::string::npos)
        return PemKind::not_pem;
    if (text.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
        text.find("Proc-Type: 4,ENCRYPTED") != std::string::npos)
        return PemKind::encrypted_key;
    return PemKind::pem;
}

// An encrypted key would make OpenSSL ask for a passphrase on the terminal.
int refuse_passphrase(char*, int, int, void*) {
    return 0;
}

int select_http11(SSL*, const unsigned char** out, unsigned char* out_length,
                  const unsigned char* offered, unsigned int offered_length, void*) {
    static constexpr unsigned char k_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(&chosen, out_length, k_http11, sizeof k_http11, offered,
                              offered_length) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; // the client speaks only h2 or others: no ALPN
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

// The context of a TLS-ALPN-01 challenge certificate: only acme-tls/1.
int select_acme_tls(SSL*, const unsigned char** out, unsigned char* out_length,
                    const unsigned char* offered, unsigned int offered_length, void*) {
    static constexpr unsigned char k_acme_tls[] = {10,  'a', 'c', 'm', 'e', '-',
                                                   't', 'l', 's', '/', '1'};
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(&chosen, out_length, k_acme_tls, sizeof k_acme_tls, offered,
                              offered_length) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

// The server name callback of a challenge context: the ClientHello callback
// chose it for the name already; the certificate the name has otherwise must
// not take its place.
int keep_context(SSL*, int*, void*) {
    return SSL_TLSEXT_ERR_OK;
}

int on_server_name(SSL* ssl, int*, void* arg) {
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr)
        return SSL_TLSEXT_ERR_OK; // no SNI: the default certificate
    const auto* certificates = static_cast<const TlsCertificates*>(arg);
    SSL_CTX* context = certificates->context_for(common::ascii_lower(name));
    if (context != nullptr && context != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, context);
    return SSL_TLSEXT_ERR_OK;
}

// Before anything else of a handshake: a client that offers ALPN acme-tls/1
// is an ACME server validating a TLS-ALPN-01 challenge (RFC 8737), answered
// with the challenge's certificate for the name it asks for, or refused.
int on_client_hello(SSL* ssl, int* alert, void* arg) {
    const unsigned char* alpn = nullptr;
    std::size_t alpn_length = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &alpn,
                                  &alpn_length) != 1 ||
        !alpn_offers({reinterpret_cast<const char*>(alpn), alpn_length}, k_acme_tls_protocol))
        return SSL_CLIENT_HELLO_SUCCESS;
    const unsigned char* sni = nullptr;
    std::size_t sni_length = 0;
    std::string name;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &sni, &sni_length) == 1)
        name = server_name_of({reinterpret_cast<const char*>(sni), sni_length});
    const auto* certificates = static_cast<const TlsCertificates*>(arg);
    SSL_CTX* context = name.empty() ? nullptr : certificates->challenge_for(name);
    if (context == nullptr) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (context != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, context);
    return SSL_CLIENT_HELLO_SUCCESS;
}

// Loads the pair into `context`, checking the key belongs to the certificate.
common::Status use_pair(SSL_CTX* context, const CertificateFiles& file) {
    if (SSL_CTX_use_certificate_chain_file(context, file.cert.c_str()) != 1)
        return make_error(ErrorKind::config, fmt::format("cannot load the TLS certificate {}: {}",
                                                         file.cert, openssl_reason()));
    if (SSL_CTX_use_PrivateKey_file(context, file.key.c_str(), SSL_FILETYPE_PEM) != 1) {
        const unsigned long last = ERR_peek_last_error();
        if (ERR_GET_LIB(last) == ERR_LIB_X509 &&
            ERR_GET_REASON(last) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            return make_error(ErrorKind::config,
                              fmt::format("the TLS key {} does not belong to the certificate {}",
                                          file.key, file.cert));
        }
        return make_error(ErrorKind::config,
                          fmt::format("cannot load the TLS key {}: {} (a PEM key without a "
                                      "passphrase is expected)",
                                      file.key, openssl_reason()));
    }
    if (SSL_CTX_check_private_key(context) != 1)
        return make_error(ErrorKind::config,
                          fmt::format("the TLS key {} does not belong to the certificate {}",
                                      file.key, file.cert));
    return {};
}

std::vector<std::string> dns_names(X509* cert) {
    std::vector<std::string> names;
    auto* sans =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (sans != nullptr) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
            const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
            if (name->type != GEN_DNS)
                continue;
            const ASN1_STRING* text = name->d.dNSName;
            names.push_back(
                common::ascii_lower({reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                                     static_cast<std::size_t>(ASN1_STRING_length(text))}));
        }
        GENERAL_NAMES_free(sans);
    }
    if (!names.empty())
        return names;
    // No DNS names: clients fall back to the subject's common name, and so do we.
    X509_NAME* subject = X509_get_subject_name(cert);
    const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at >= 0) {
        const ASN1_STRING* text = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
        names.push_back(
            common::ascii_lower({reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                                 static_cast<std::size_t>(ASN1_STRING_length(text))}));
    }
    return names;
}

std::chrono::system_clock::time_point not_after(X509* cert) {
    std::tm tm{};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
        return {};
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

} // namespace

std::vector<std::int64_t> file_stamps(const std::vector<CertificateFiles>& files) {
    std::vector<std::int64_t> out;
    for (const auto& file : files) {
        for (const auto* path : {&file.cert, &file.key}) {
            struct stat info {};
            if (::stat(path->c_str(), &info) != 0) {
                out.insert(out.end(), {-1, -1, -1});
                continue;
            }
            out.insert(out.end(), {static_cast<std::int64_t>(info.st_ino),
                                   static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 +
                                       info.st_mtim.tv_nsec,
                                   static_cast<std::int64_t>(info.st_size)});
        }
    }
    return out;
}

TlsCertificates::~TlsCertificates() {
    for (SSL_CTX* context : m_contexts)
        SSL_CTX_free(context);
}

common::Result<SSL_CTX*> TlsCertificates::new_context() {
    SSL_CTX* context = SSL_CTX_new(TLS_server_method());
    if (context == nullptr)
        return make_error(ErrorKind::internal, "cannot create a TLS context: " + openssl_reason());
    m_contexts.push_back(context); // freed with this object
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                     SSL_OP_NO_RENEGOTIATION);
    // Idle keep-alive connections give their read and write buffers back.
    SSL_CTX_set_mode(context, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(context, refuse_passphrase);
    SSL_CTX_set_alpn_select_cb(context, select_http11, nullptr);
    SSL_CTX_set_tlsext_servername_callback(context, on_server_name);
    SSL_CTX_set_tlsext_servername_arg(context, this);
    SSL_CTX_set_client_hello_cb(context, on_client_hello, this);
    return context;
}

common::Result<SSL_CTX*> TlsCertificates::add_context(const CertificateFiles& file) {
    auto cert_kind = inspect_pem(file.cert, "certificate");
    if (!cert_kind)
        return cert_kind.error();
    auto key_kind = inspect_pem(file.key, "key");
    if (!key_kind)
        return key_kind.error();
    if (*cert_kind == PemKind::not_pem)
        return make_error(ErrorKind::config,
                          fmt::format("the TLS certificate {} is not a PEM file (no "
                                      "-----BEGIN CERTIFICATE----- line)",
                                      file.cert));
    if (*key_kind == PemKind::not_pem)
        return make_error(ErrorKind::config,
                          fmt::format("the TLS key {} is not a PEM file (no -----BEGIN "
                                      "PRIVATE KEY----- line)",
                                      file.key));
    if (*key_kind == PemKind::encrypted_key)
        return make_error(ErrorKind::config,
                          fmt::format("the TLS key {} is encrypted; it is needed "
                                      "without a passphrase (openssl pkey -in {} -out "
                                      "NEW.key)",
                                      file.key, file.key));
    auto made = new_context();
    if (!made)
        return made.error();
    SSL_CTX* context = *made;
    auto loaded = use_pair(context, file);
    if (!loaded) { // a managed pair is skipped: the context goes at once
        m_contexts.pop_back();
        SSL_CTX_free(context);
        return loaded.error();
    }
    return context;
}

common::Status TlsCertificates::index(SSL_CTX* context, const std::string& cert_path,
                                      HostNames names) {
    X509* cert = SSL_CTX_get0_certificate(context);
    CertificateInfo info{cert_path, dns_names(cert), not_after(cert),
                         common::x509_fingerprint(cert)};
    if (info.names.empty() && names == HostNames::required)
        return make_error(ErrorKind::config,
                          fmt::format("the TLS certificate {} names no host (neither a DNS "
                                      "subject alternative name nor a common name)",
                                      cert_path));
    for (const auto& name : info.names) {
        // An earlier certificate keeps a name two of them cover.
        if (name.rfind("*.", 0) == 0)
            m_wildcard.emplace(name.substr(2), context);
        else
            m_exact.emplace(name, context);
    }
    if (m_default == nullptr)
        m_default = context;
    m_info.push_back(std::move(info));
    return {};
}

common::Result<std::shared_ptr<const TlsCertificates>>
TlsCertificates::load(const std::vector<CertificateFiles>& files, HostNames names) {
    if (files.empty())
        return make_error(ErrorKind::config, "no TLS certificate given");
    std::shared_ptr<TlsCertificates> out(new TlsCertificates());
    ERR_clear_error();
    for (const auto& file : files) {
        auto context = out->add_context(file);
        if (!context)
            return context.error(); // what was loaded is freed with `out`
        if (auto indexed = out->index(*context, file.cert, names); !indexed)
            return indexed.error();
    }
    return std::shared_ptr<const TlsCertificates>(std::move(out));
}

common::Result<std::shared_ptr<const TlsCertificates>>
TlsCertificates::load(const std::vector<CertificateFiles>& files,
                      const std::filesystem::path& acme_dir) {
    std::shared_ptr<TlsCertificates> out(new TlsCertificates());
    ERR_clear_error();
    for (const auto& file : files) {
        auto context = out->add_context(file);
        if (!context)
            return context.error();
        if (auto indexed = out->index(*context, file.cert, HostNames::required); !indexed)
            return indexed.error();
    }
    for (const auto& pair : acme::pairs(acme_dir / acme::k_certs_dir, &out->m_skipped)) {
        auto context = out->add_context(pair.files);
        auto indexed = context ? out->index(*context, pair.files.cert, HostNames::required)
                               : common::Status(context.error());
        if (!indexed)
            out->m_skipped.push_back(indexed.error().message);
    }
    for (const auto& pair : acme::pairs(acme_dir / acme::k_tls_alpn_dir, &out->m_skipped)) {
        auto context = out->add_context(pair.files);
        if (!context) {
            out->m_skipped.push_back(context.error().message);
            continue;
        }
        // Only acme-tls/1 is spoken on it, and the connection ends with the handshake.
        SSL_CTX_set_alpn_select_cb(*context, select_acme_tls, nullptr);
        SSL_CTX_set_tlsext_servername_callback(*context, keep_context);
        SSL_CTX_set_num_tickets(*context, 0);
        X509* cert = SSL_CTX_get0_certificate(*context);
        out->m_challenges.emplace(pair.name, *context);
        out->m_challenge_info.push_back(
            {pair.files.cert, {pair.name}, not_after(cert), common::x509_fingerprint(cert)});
    }
    if (out->m_default == nullptr) {
        auto context = out->new_context(); // no certificate: every handshake fails
        if (!context)
            return context.error();
        out->m_default = *context;
    }
    ERR_clear_error();
    return std::shared_ptr<const TlsCertificates>(std::move(out));
}

SSL_CTX* TlsCertificates::challenge_for(std::string_view host) const {
    auto it = m_challenges.find(host);
    return it == m_challenges.end() ? nullptr : it->second;
}

SSL_CTX* TlsCertificates::context_for(std::string_view host) const {
    if (auto it = m_exact.find(host); it != m_exact.end())
        return it->second;
    // "*.example.com" covers "www.example.com", not "example.com" nor "a.b.example.com".
    const auto dot = host.find('.');
    if (dot == std::string_view::npos || dot == 0)
        return nullptr;
    if (auto it = m_wildcard.find(host.substr(dot + 1)); it != m_wildcard.end())
        return it->second;
    return nullptr;
}

} // namespace agent::proxy
