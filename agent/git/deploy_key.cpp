#include <agent/git/deploy_key.hpp>
#include <common/openssl.hpp>
#include <common/ssh_key.hpp>

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>

namespace agent::git {

namespace {

using common::openssl_error;

// An SSH wire string: its length (4 bytes, big-endian), then its bytes.
std::string wire_string(std::string_view bytes) {
    std::string out;
    const auto n = static_cast<std::uint32_t>(bytes.size());
    out.push_back(static_cast<char>((n >> 24) & 0xff));
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    out.push_back(static_cast<char>((n >> 8) & 0xff));
    out.push_back(static_cast<char>(n & 0xff));
    out.append(bytes);
    return out;
}

constexpr const char* k_type = "ecdsa-sha2-nistp256";

common::Result<std::string> public_line(EVP_PKEY* key, const std::string& app) {
    unsigned char point[133];
    std::size_t length = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point,
                                        &length) != 1 ||
        length != 65 || point[0] != 0x04)
        return openssl_error("cannot read the deploy key's public point");
    const std::string blob = wire_string(k_type) + wire_string("nistp256") +
                             wire_string({reinterpret_cast<const char*>(point), length});
    return fmt::format("{} {} deploy-agent@{}", k_type, common::base64(blob), app);
}

} // namespace

common::Result<DeployKey> make_deploy_key(const std::string& app) {
    common::OpenSslPtr<EVP_PKEY> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (!key)
        return openssl_error("cannot make a deploy key");
    // Uncompressed points: what the SSH wire format carries.
    if (EVP_PKEY_set_utf8_string_param(key.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                       "uncompressed") != 1)
        return openssl_error("cannot make a deploy key");
    common::OpenSslPtr<BIO> bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PrivateKey_traditional(bio.get(), key.get(), nullptr, nullptr, 0,
                                                     nullptr, nullptr) != 1)
        return openssl_error("cannot write the deploy key");
    DeployKey made;
    made.private_pem = common::memory_bio_bytes(bio.get());
    TRY_ASSIGN(made.public_line, public_line(key.get(), app));
    return made;
}

} // namespace agent::git
