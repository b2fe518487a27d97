#include <agent/acme/crypto.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>

namespace agent::acme {

using common::ErrorKind;
using common::make_error;
using common::openssl_error;
using common::OpenSslPtr;

namespace {

struct Free {
    void operator()(X509_REQ* p) const { X509_REQ_free(p); }
    void operator()(X509_NAME* p) const { X509_NAME_free(p); }
    void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
    void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
    void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
    void operator()(BIGNUM* p) const { BN_free(p); }
    void operator()(ASN1_OCTET_STRING* p) const { ASN1_OCTET_STRING_free(p); }
    void operator()(STACK_OF(X509_EXTENSION) * p) const {
        sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free);
    }
    void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
template <class T> using Ptr = std::unique_ptr<T, Free>;

std::string bignum_bytes(const BIGNUM* n, int width) {
    std::string out(static_cast<std::size_t>(width), '\0');
    BN_bn2binpad(n, reinterpret_cast<unsigned char*>(out.data()), width);
    return out;
}

// "DNS:a,DNS:b" for X509V3's config-style extension value.
std::string san_value(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& name : names)
        out += (out.empty() ? "DNS:" : ",DNS:") + name;
    return out;
}

std::chrono::system_clock::time_point to_time(const ASN1_TIME* time) {
    std::tm tm{};
    if (ASN1_TIME_to_tm(time, &tm) != 1)
        return {};
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

} // namespace

std::string base64url(std::string_view bytes) {
    static constexpr char k_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto byte = [&](std::size_t at) { return static_cast<unsigned char>(bytes[at]); };
    for (; i + 3 <= bytes.size(); i += 3) {
        const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
        out += {k_alphabet[(v >> 18) & 63], k_alphabet[(v >> 12) & 63], k_alphabet[(v >> 6) & 63],
                k_alphabet[v & 63]};
    }
    if (bytes.size() - i == 1) {
        const unsigned v = byte(i) << 16;
        out += {k_alphabet[(v >> 18) & 63], k_alphabet[(v >> 12) & 63]};
    } else if (bytes.size() - i == 2) {
        const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8);
        out += {k_alphabet[(v >> 18) & 63], k_alphabet[(v >> 12) & 63], k_alphabet[(v >> 6) & 63]};
    }
    return out;
}

std::string sha256_bytes(std::string_view data) {
    std::string out(32, '\0');
    unsigned int size = 0;
    EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &size,
               EVP_sha256(), nullptr);
    return out;
}

EcKey::EcKey(OpenSslPtr<EVP_PKEY> key) : m_key(std::move(key)) {
    BIGNUM* x = nullptr;
    BIGNUM* y = nullptr;
    EVP_PKEY_get_bn_param(m_key.get(), OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(m_key.get(), OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    Ptr<BIGNUM> own_x(x), own_y(y);
    const std::string xs = x ? base64url(bignum_bytes(x, 32)) : std::string();
    const std::string ys = y ? base64url(bignum_bytes(y, 32)) : std::string();
    m_jwk = {{"crv", "P-256"}, {"kty", "EC"}, {"x", xs}, {"y", ys}};
    // RFC 7638 §3.2: the required members only, lexical order, no whitespace.
    m_thumbprint = base64url(
        sha256_bytes(fmt::format(R"({{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}})", xs, ys)));
}

common::Result<EcKey> EcKey::generate() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    if (key == nullptr)
        return openssl_error("cannot make an EC P-256 key");
    return EcKey(OpenSslPtr<EVP_PKEY>(key));
}

common::Result<EcKey> EcKey::from_pem(std::string_view pem) {
    OpenSslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    if (key == nullptr)
        return openssl_error("not a PEM private key");
    OpenSslPtr<EVP_PKEY> owned(key);
    char group[64] = {};
    std::size_t length = 0;
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &length) != 1 ||
        std::string_view(group) != "prime256v1")
        return make_error(ErrorKind::config, "the key is not an EC P-256 key");
    return EcKey(std::move(owned));
}

common::Result<EcKey> EcKey::load_or_create(const std::filesystem::path& path) {
    auto text = common::read_file(path);
    if (text) {
        auto key = from_pem(*text);
        if (!key)
            return make_error(ErrorKind::config,
                              fmt::format("{}: {} (it is kept as it is; move it away to make a "
                                          "new account)",
                                          path.string(), key.error().message));
        return key;
    }
    if (std::error_code ec; std::filesystem::exists(path, ec))
        return text.error(); // there but unreadable: never replaced
    TRY(common::ensure_directory(path.parent_path(), std::filesystem::perms::owner_all));
    auto key = generate();
    if (!key)
        return key.error();
    const std::string pem = key->pem();
    const std::string temp = path.string() + ".new";
    ::unlink(temp.c_str());
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return make_error(ErrorKind::io,
                          fmt::format("cannot create {}: {}", temp, std::strerror(errno)));
    const bool written = common::write_all(fd, pem) && ::fsync(fd) == 0;
    ::close(fd);
    // link(2) fails when the key appeared meanwhile: the existing one is never overwritten.
    if (!written || ::link(temp.c_str(), path.c_str()) != 0) {
        const int error = errno;
        ::unlink(temp.c_str());
        if (error == EEXIST)
            return load_or_create(path);
        return make_error(ErrorKind::io,
                          fmt::format("cannot write {}: {}", path.string(), std::strerror(error)));
    }
    ::unlink(temp.c_str());
    TRY(common::fsync_dir(path.parent_path()));
    return key;
}

std::string EcKey::pem() const {
    OpenSslPtr<BIO> bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PrivateKey(bio.get(), m_key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    return common::memory_bio_bytes(bio.get());
}

common::Result<std::string> EcKey::sign(std::string_view data) const {
    Ptr<EVP_MD_CTX> context(EVP_MD_CTX_new());
    std::size_t size = 0;
    if (EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, m_key.get()) != 1 ||
        EVP_DigestSign(context.get(), nullptr, &size,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
        return openssl_error("cannot sign");
    std::string der(size, '\0');
    if (EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(der.data()), &size,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
        return openssl_error("cannot sign");
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    Ptr<ECDSA_SIG> signature(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(size)));
    if (!signature)
        return openssl_error("cannot read an ECDSA signature");
    return bignum_bytes(ECDSA_SIG_get0_r(signature.get()), 32) +
           bignum_bytes(ECDSA_SIG_get0_s(signature.get()), 32);
}

common::Result<std::string> sign_jws(const EcKey& key, const std::string& kid,
                                     const std::string& nonce, const std::string& url,
                                     std::string_view payload) {
    nlohmann::json header = {{"alg", "ES256"}, {"nonce", nonce}, {"url", url}};
    if (kid.empty())
        header["jwk"] = key.jwk();
    else
        header["kid"] = kid;
    const std::string protected_part = base64url(header.dump());
    const std::string payload_part = base64url(payload);
    auto signature = key.sign(protected_part + "." + payload_part);
    if (!signature)
        return signature.error();
    return nlohmann::json{{"protected", protected_part},
                          {"payload", payload_part},
                          {"signature", base64url(*signature)}}
        .dump();
}

common::Result<nlohmann::json> external_account_binding(const EcKey& account,
                                                        const std::string& key_id,
                                                        const std::string& mac_key,
                                                        const std::string& url) {
    // The MAC key comes base64url-encoded; decode it (padding-free, both alphabets).
    std::string key;
    unsigned bits = 0;
    int count = 0;
    for (char c : mac_key) {
        int v = -1;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-' || c == '+')
            v = 62;
        else if (c == '_' || c == '/')
            v = 63;
        else if (c == '=')
            break;
        else
            return make_error(ErrorKind::config, "the EAB MAC key is not base64url");
        bits = (bits << 6) | static_cast<unsigned>(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            key += static_cast<char>((bits >> count) & 0xff);
        }
    }
    if (key.empty())
        return make_error(ErrorKind::config, "the EAB MAC key is empty");
    const std::string protected_part =
        base64url(nlohmann::json{{"alg", "HS256"}, {"kid", key_id}, {"url", url}}.dump());
    const std::string payload_part = base64url(account.jwk().dump());
    const std::string input = protected_part + "." + payload_part;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
             &mac_size) == nullptr)
        return openssl_error("cannot compute the EAB MAC");
    return nlohmann::json{{"protected", protected_part},
                          {"payload", payload_part},
                          {"signature", base64url({reinterpret_cast<const char*>(mac), mac_size})}};
}

std::string key_authorization(const std::string& token, const EcKey& account) {
    return token + "." + account.thumbprint();
}

std::string dns01_value(const std::string& key_authorization) {
    return base64url(sha256_bytes(key_authorization));
}

common::Result<std::string> make_csr(const EcKey& key, const std::vector<std::string>& names) {
    if (names.empty())
        return make_error(ErrorKind::internal, "a CSR needs a name");
    Ptr<X509_REQ> request(X509_REQ_new());
    X509_REQ_set_version(request.get(), 0);
    X509_NAME* subject = X509_REQ_get_subject_name(request.get());
    // A common name is at most 64 characters; longer names go in the SANs only.
    if (names.front().size() <= 64)
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(names.front().c_str()),
                                   -1, -1, 0);
    Ptr<STACK_OF(X509_EXTENSION)> extensions(sk_X509_EXTENSION_new_null());
    X509_EXTENSION* san =
        X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san_value(names).c_str());
    if (san == nullptr)
        return openssl_error("cannot make the subject alternative names");
    sk_X509_EXTENSION_push(extensions.get(), san);
    if (X509_REQ_add_extensions(request.get(), extensions.get()) != 1 ||
        X509_REQ_set_pubkey(request.get(), key.get()) != 1 ||
        X509_REQ_sign(request.get(), key.get(), EVP_sha256()) <= 0)
        return openssl_error("cannot sign the certificate request");
    const int size = i2d_X509_REQ(request.get(), nullptr);
    std::string der(static_cast<std::size_t>(size), '\0');
    auto* out = reinterpret_cast<unsigned char*>(der.data());
    i2d_X509_REQ(request.get(), &out);
    return der;
}

common::Result<PemPair> tls_alpn_certificate(const std::string& name,
                                             const std::string& key_authorization) {
    auto key = EcKey::generate();
    if (!key)
        return key.error();
    OpenSslPtr<X509> cert(X509_new());
    X509_set_version(cert.get(), 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    Ptr<BIGNUM> number(BN_bin2bn(serial, sizeof serial, nullptr));
    BN_to_ASN1_INTEGER(number.get(), X509_get_serialNumber(cert.get()));
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * 24 * 3600);
    X509_NAME* subject = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>("ACME TLS-ALPN-01 challenge"),
                               -1, -1, 0);
    X509_set_issuer_name(cert.get(), subject);
    X509_set_pubkey(cert.get(), key->get());
    X509_EXTENSION* san =
        X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san_value({name}).c_str());
    if (san == nullptr)
        return openssl_error("cannot make the challenge certificate's name");
    X509_add_ext(cert.get(), san, -1);
    X509_EXTENSION_free(san);
    // id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31), critical: an OCTET STRING
    // holding the SHA-256 of the key authorization, DER-wrapped once more.
    const std::string digest = sha256_bytes(key_authorization);
    std::string inner = {'\x04', '\x20'};
    inner += digest;
    Ptr<ASN1_OCTET_STRING> value(ASN1_OCTET_STRING_new());
    ASN1_OCTET_STRING_set(value.get(), reinterpret_cast<const unsigned char*>(inner.data()),
                          static_cast<int>(inner.size()));
    ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    X509_EXTENSION* acme = X509_EXTENSION_create_by_OBJ(nullptr, oid, 1, value.get());
    ASN1_OBJECT_free(oid);
    if (acme == nullptr)
        return openssl_error("cannot make the acmeIdentifier extension");
    X509_add_ext(cert.get(), acme, -1);
    X509_EXTENSION_free(acme);
    if (X509_sign(cert.get(), key->get(), EVP_sha256()) <= 0)
        return openssl_error("cannot sign the challenge certificate");
    OpenSslPtr<BIO> bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(bio.get(), cert.get());
    return PemPair{common::memory_bio_bytes(bio.get()), key->pem()};
}

common::Result<CertificateSummary> summarize_certificate(std::string_view pem) {
    OpenSslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    OpenSslPtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert)
        return openssl_error("not a PEM certificate");
    CertificateSummary out;
    Ptr<GENERAL_NAMES> sans(static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
        const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans.get(), i);
        if (name->type == GEN_DNS)
            out.names.emplace_back(
                reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName)),
                static_cast<std::size_t>(ASN1_STRING_length(name->d.dNSName)));
    }
    X509_NAME* issuer = X509_get_issuer_name(cert.get());
    const int at = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
    if (at >= 0) {
        const ASN1_STRING* text = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(issuer, at));
        out.issuer.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                          static_cast<std::size_t>(ASN1_STRING_length(text)));
    } else {
        char line[256];
        X509_NAME_oneline(issuer, line, sizeof line);
        out.issuer = line;
    }
    out.not_before = to_time(X509_get0_notBefore(cert.get()));
    out.not_after = to_time(X509_get0_notAfter(cert.get()));
    Ptr<BIGNUM> serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
    if (serial) {
        char* hex = BN_bn2hex(serial.get());
        out.serial = hex;
        OPENSSL_free(hex);
    }
    return out;
}

} // namespace agent::acme
