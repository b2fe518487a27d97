#include <common/hash.hpp>

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace common {

struct Sha256::Impl {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : m_impl(std::make_unique<Impl>()) {
    EVP_DigestInit_ex(m_impl->ctx, EVP_sha256(), nullptr);
}

Sha256::~Sha256() = default;

void Sha256::update(std::string_view data) {
    EVP_DigestUpdate(m_impl->ctx, data.data(), data.size());
}

std::string Sha256::final_hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(m_impl->ctx, digest, &length);
    static constexpr char k_hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(length * 2);
    for (unsigned int i = 0; i < length; ++i) {
        out += k_hex[digest[i] >> 4];
        out += k_hex[digest[i] & 0xf];
    }
    return out;
}

std::string to_hex(std::string_view bytes) {
    static constexpr char k_digits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(bytes.size() * 2);
    for (unsigned char byte : bytes) {
        hex += k_digits[byte >> 4];
        hex += k_digits[byte & 0xf];
    }
    return hex;
}

Result<std::string> random_hex(std::size_t bytes) {
    std::string random(bytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(random.data()), static_cast<int>(bytes)) != 1)
        return make_error(ErrorKind::internal, "OpenSSL has no random bytes to give");
    auto hex = to_hex(random);
    OPENSSL_cleanse(random.data(), random.size());
    return hex;
}

std::string sha256_hex(std::string_view data) {
    Sha256 hash;
    hash.update(data);
    return hash.final_hex();
}

Result<std::string> sha256_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return make_error(ErrorKind::io,
                          fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
    Sha256 hash;
    char buffer[64 * 1024];
    while (in) {
        in.read(buffer, sizeof buffer);
        hash.update(std::string_view(buffer, static_cast<std::size_t>(in.gcount())));
    }
    if (in.bad())
        return make_error(ErrorKind::io, fmt::format("error reading {}", path.string()));
    return hash.final_hex();
}

bool is_sha256_hex(std::string_view text) {
    // Without a branch per character: a digest's digits and letters come in no order a
    // branch predictor could learn, and every file of a manifest comes here.
    static constexpr auto k_hex = [] {
        std::array<unsigned char, 256> table{};
        for (int c = '0'; c <= '9'; ++c)
            table[static_cast<std::size_t>(c)] = 1;
        for (int c = 'a'; c <= 'f'; ++c)
            table[static_cast<std::size_t>(c)] = 1;
        return table;
    }();
    if (text.size() != 64)
        return false;
    unsigned all = 1;
    for (const char c : text)
        all &= k_hex[static_cast<unsigned char>(c)];
    return all != 0;
}

} // namespace common
