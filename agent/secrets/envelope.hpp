#pragma once
// Envelope encryption of secrets at rest (docs/security.md "Secrets"):
// a master key (DATA_DIR/keys/master.key, 32 random bytes, 0600) wraps one
// random data key per app; each secret value is sealed with its app's data
// key. Both layers are AES-256-GCM with a random 96-bit nonce, and the
// additional authenticated data binds each ciphertext to where it belongs
// (the app; the app and the variable's name), so a row copied to another
// name or app does not decrypt.
//
// A sealed value is nonce (12) || ciphertext || tag (16), stored as hex.

#include <common/result.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace agent::secrets {

inline constexpr std::size_t k_key_size = 32;

// 32 key bytes, wiped when destroyed.
class Key {
  public:
    Key() = default;
    ~Key();
    Key(const Key& other) = default;
    Key& operator=(const Key& other) = default;
    static Key random();
    // Exactly k_key_size bytes.
    static common::Result<Key> from_bytes(std::string_view bytes);
    std::string_view bytes() const {
        return {reinterpret_cast<const char*>(m_bytes.data()), m_bytes.size()};
    }

  private:
    std::array<std::uint8_t, k_key_size> m_bytes{};
};

// AES-256-GCM with a fresh random nonce; returns hex(nonce || ciphertext || tag).
common::Result<std::string> seal(const Key& key, std::string_view plaintext, std::string_view aad);
// The inverse; ErrorKind::internal "authentication failed" when the key, the
// AAD or any byte of the sealed text is wrong.
common::Result<std::string> open(const Key& key, std::string_view sealed_hex, std::string_view aad);

// What each layer authenticates besides the ciphertext.
std::string data_key_aad(std::string_view app);
std::string secret_aad(std::string_view app, std::string_view name);

// Creates DATA_DIR/keys/master.key if it does not exist (directory 0700, file
// 0600, written to a temporary file, fsynced and linked into place, so it is
// never overwritten and never half-written). `may_create` false: a missing
// key is an error (secrets encrypted with it exist).
common::Status ensure_master_key(const std::filesystem::path& keys_dir, bool may_create);
// Reads the master key; a missing or malformed file is a clear error.
common::Result<Key> load_master_key(const std::filesystem::path& keys_dir);

// Overwrites a buffer that held a secret (OPENSSL_cleanse).
void wipe(std::string& text);

} // namespace agent::secrets
