#pragma once
// Content-addressed blob store: DATA_DIR/blobs/ab/abcdef… (sha256 of the content).
// Writes are atomic (temp file, fsync, rename), so a blob that exists is complete.

#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace agent {

inline constexpr std::uint64_t k_max_blob_size = 512ull * 1024 * 1024;

class BlobStore {
  public:
    explicit BlobStore(std::filesystem::path root);

    bool has(const std::string& digest) const;
    std::filesystem::path path(const std::string& digest) const;
    // The size of a stored blob: what counts disk space uses it, never a manifest's
    // declared size (ErrorKind::not_found when the blob is not stored).
    common::Result<std::uint64_t> size(const std::string& digest) const;
    // Stores `data` if it hashes to `digest` (else ErrorKind::bad_request).
    common::Status put(const std::string& digest, std::string_view data);
    // Moves an already written temporary file into place after checking its digest.
    common::Status adopt(const std::string& digest, const std::filesystem::path& temp_file);
    // A fresh temporary path inside the store's directory (same file system).
    std::filesystem::path temp_path() const;
    // Removes uploads left half-written by an agent that was killed; call it at
    // startup, before any upload can begin. Returns how many were removed.
    std::size_t remove_stale_uploads() const;

  private:
    std::filesystem::path m_root;
};

} // namespace agent
