#include <agent/secrets/envelope.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

namespace agent::secrets {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::size_t k_nonce_size = 12;
constexpr std::size_t k_tag_size = 16;
constexpr const char* k_master_key = "master.key";

using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

std::string to_hex(std::string_view bytes) {
    static constexpr char k_digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out += k_digits[c >> 4];
        out += k_digits[c & 15];
    }
    return out;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

std::optional<std::string> from_hex(std::string_view hex) {
    if (hex.size() % 2 != 0)
        return std::nullopt;
    std::string out(hex.size() / 2, '\0');
    for (std::size_t i = 0; i < out.size(); ++i) {
        int high = hex_value(hex[2 * i]), low = hex_value(hex[2 * i + 1]);
        if (high < 0 || low < 0)
            return std::nullopt;
        out[i] = static_cast<char>(high << 4 | low);
    }
    return out;
}

const unsigned char* bytes_of(std::string_view text) {
    return reinterpret_cast<const unsigned char*>(text.data());
}

unsigned char* bytes_of(std::string& text) {
    return reinterpret_cast<unsigned char*>(text.data());
}

common::Error crypto_error(const char* what) {
    return make_error(ErrorKind::internal, std::string("encryption failed: ") + what);
}

// Encrypts (or decrypts) `in` with AES-256-GCM; `aad` first.
bool gcm_update(EVP_CIPHER_CTX* ctx, bool encrypt, std::string_view aad, std::string_view in,
                std::string& out) {
    int n = 0;
    auto update = encrypt ? EVP_EncryptUpdate : EVP_DecryptUpdate;
    if (!aad.empty() && update(ctx, nullptr, &n, bytes_of(aad), static_cast<int>(aad.size())) != 1)
        return false;
    out.assign(in.size(), '\0');
    return in.empty() ||
           update(ctx, bytes_of(out), &n, bytes_of(in), static_cast<int>(in.size())) == 1;
}

common::Error errno_error(const std::string& what, const fs::path& path) {
    return make_error(ErrorKind::io, what + " " + path.string() + ": " + std::strerror(errno));
}

// Writes the key to a temporary file, fsyncs it, and links it to `path`:
// link() fails if the key exists, so a key is never overwritten.
common::Status write_new_key(const fs::path& dir, const Key& key) {
    const fs::path path = dir / k_master_key;
    const fs::path temp = dir / (std::string(k_master_key) + ".tmp." + std::to_string(::getpid()));
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return errno_error("cannot create", temp);
    auto bytes = key.bytes();
    bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) &&
              ::fsync(fd) == 0;
    ::close(fd);
    if (ok && ::link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST)
        ok = false;
    int saved = errno;
    ::unlink(temp.c_str());
    errno = saved;
    if (!ok)
        return errno_error("cannot write", path);
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        ::fsync(dir_fd);
        ::close(dir_fd);
    }
    return {};
}

} // namespace

Key::~Key() {
    OPENSSL_cleanse(m_bytes.data(), m_bytes.size());
}

Key Key::random() {
    Key key;
    if (RAND_bytes(key.m_bytes.data(), static_cast<int>(key.m_bytes.size())) != 1)
        std::abort(); // no randomness: nothing safe to do
    return key;
}

common::Result<Key> Key::from_bytes(std::string_view bytes) {
    if (bytes.size() != k_key_size)
        return make_error(ErrorKind::internal, "a key must be " + std::to_string(k_key_size) +
                                                   " bytes, not " + std::to_string(bytes.size()));
    Key key;
    std::memcpy(key.m_bytes.data(), bytes.data(), k_key_size);
    return key;
}

common::Result<std::string> seal(const Key& key, std::string_view plaintext, std::string_view aad) {
    std::string nonce(k_nonce_size, '\0');
    if (RAND_bytes(bytes_of(nonce), static_cast<int>(nonce.size())) != 1)
        return crypto_error("no random nonce");
    CipherContext ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    std::string cipher, tag(k_tag_size, '\0');
    int n = 0;
    if (!ctx ||
        EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes_of(key.bytes()),
                           bytes_of(nonce)) != 1 ||
        !gcm_update(ctx.get(), true, aad, plaintext, cipher) ||
        EVP_EncryptFinal_ex(ctx.get(), nullptr, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(k_tag_size),
                            tag.data()) != 1)
        return crypto_error("AES-256-GCM");
    return to_hex(nonce + cipher + tag);
}

common::Result<std::string> open(const Key& key, std::string_view sealed_hex,
                                 std::string_view aad) {
    auto sealed = from_hex(sealed_hex);
    if (!sealed || sealed->size() < k_nonce_size + k_tag_size)
        return make_error(ErrorKind::internal, "a sealed value is malformed");
    std::string_view all(*sealed);
    auto nonce = all.substr(0, k_nonce_size);
    auto cipher = all.substr(k_nonce_size, all.size() - k_nonce_size - k_tag_size);
    std::string tag(all.substr(all.size() - k_tag_size));
    CipherContext ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    std::string plain;
    int n = 0;
    bool ok = ctx &&
              EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes_of(key.bytes()),
                                 bytes_of(nonce)) == 1 &&
              gcm_update(ctx.get(), false, aad, cipher, plain) &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(k_tag_size),
                                  tag.data()) == 1 &&
              EVP_DecryptFinal_ex(ctx.get(), nullptr, &n) == 1;
    if (!ok) {
        wipe(plain);
        return make_error(ErrorKind::internal, "authentication failed");
    }
    return plain;
}

std::string data_key_aad(std::string_view app) {
    return "deploy-agent data key v1\n" + std::string(app);
}

std::string secret_aad(std::string_view app, std::string_view name) {
    return "deploy-agent secret v1\n" + std::string(app) + "\n" + std::string(name);
}

common::Status ensure_master_key(const fs::path& keys_dir, bool may_create) {
    std::error_code ec;
    if (fs::exists(keys_dir / k_master_key, ec))
        return {};
    if (!may_create)
        return make_error(ErrorKind::failed,
                          (keys_dir / k_master_key).string() +
                              " is missing but encrypted secrets exist: restore the key from "
                              "your backup (a new key cannot decrypt them)");
    if (::mkdir(keys_dir.c_str(), 0700) != 0 && errno != EEXIST)
        return errno_error("cannot create", keys_dir);
    ::chmod(keys_dir.c_str(), 0700);
    return write_new_key(keys_dir, Key::random());
}

common::Result<Key> load_master_key(const fs::path& keys_dir) {
    const fs::path path = keys_dir / k_master_key;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return make_error(ErrorKind::failed, "cannot read the master key " + path.string() + ": " +
                                                 std::strerror(errno) +
                                                 " (secrets cannot be encrypted or decrypted)");
    std::string bytes(k_key_size + 1, '\0');
    ssize_t n = ::read(fd, bytes.data(), bytes.size());
    ::close(fd);
    if (n != static_cast<ssize_t>(k_key_size)) {
        wipe(bytes);
        return make_error(ErrorKind::failed, "the master key " + path.string() +
                                                 " is damaged: it must hold exactly " +
                                                 std::to_string(k_key_size) + " bytes");
    }
    bytes.resize(k_key_size);
    auto key = Key::from_bytes(bytes);
    wipe(bytes);
    return key;
}

void wipe(std::string& text) {
    if (!text.empty())
        OPENSSL_cleanse(text.data(), text.size());
    text.clear();
}

} // namespace agent::secrets
