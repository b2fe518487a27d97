#pragma once
// SHA-256 (OpenSSL EVP) for content addressing.

#include <common/result.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace common {

class Sha256 {
  public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(std::string_view data);
    // Lower-case hex digest; the object must not be updated afterwards.
    std::string final_hex();

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

std::string sha256_hex(std::string_view data);
Result<std::string> sha256_file(const std::filesystem::path& path);
// 64 lower-case hex characters.
bool is_sha256_hex(std::string_view text);

// Lower-case hex, two digits per byte.
std::string to_hex(std::string_view bytes);
// `bytes` random bytes (OpenSSL's RAND_bytes) in hex; ErrorKind::internal when OpenSSL has
// no randomness to give.
Result<std::string> random_hex(std::size_t bytes);

} // namespace common
