#pragma once
// The upload manifest: what a release's source tree is, by content digest.
// The CLI builds it from the git tree; the agent validates it before writing
// anything (no absolute paths, no "..", no symlink leading out of the tree).

#include <common/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace common {

enum class EntryKind { file, executable, symlink };

struct ManifestEntry {
    std::string path; // relative, '/'-separated
    EntryKind kind = EntryKind::file;
    std::string digest; // sha256 hex of the content (files)
    std::uint64_t size = 0;
    std::string target; // symlinks only
};

struct Manifest {
    std::vector<ManifestEntry> entries;

    std::uint64_t total_bytes() const;
    // Digest of the manifest itself: equal trees give equal digests.
    std::string digest() const;
};

inline constexpr std::size_t k_max_manifest_entries = 200000;
inline constexpr std::size_t k_max_path_length = 4096;

// Rejects hostile or malformed manifests (ErrorKind::bad_request).
Status validate_manifest(const Manifest& manifest);
// Whether a relative path is safe: no empty, "." or ".." components, not absolute.
bool is_safe_relative_path(std::string_view path);

nlohmann::json manifest_to_json(const Manifest& manifest);
Result<Manifest> manifest_from_json(const nlohmann::json& json);

std::string_view to_string(EntryKind kind);

} // namespace common
