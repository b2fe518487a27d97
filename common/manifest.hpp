#pragma once
// The upload manifest: what a release's source tree is, by content digest.
// The CLI builds it from the git tree; the agent validates it before writing
// anything (no absolute paths, no "..", no symlink leading out of the tree, no path
// the store cannot keep: common/storable_path.hpp).

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
    // False when the JSON had no "size": the agent takes the stored blob's. A size that
    // is declared must equal the stored blob's, which the agent checks against its store.
    bool size_declared = true;
};

struct Manifest {
    std::vector<ManifestEntry> entries;

    std::uint64_t total_bytes() const;
    // The distinct digests of its files' contents.
    std::vector<std::string> blob_digests() const;
    // Digest of the manifest itself: equal trees give equal digests.
    std::string digest() const;
};

inline constexpr std::size_t k_max_manifest_entries = 200000;
inline constexpr std::size_t k_max_path_length = 4096;

// What validate_manifest() refused a manifest for: the API answers a path the store
// cannot keep (a control character, not UTF-8) with its own error code, "bad_path".
enum class ManifestFault { malformed, unstorable_path };

// Rejects hostile or malformed manifests (ErrorKind::bad_request); sets `*fault` (when
// given) to why. Every manifest goes through it: the CLI's after packaging, the agent's.
Status validate_manifest(const Manifest& manifest, ManifestFault* fault = nullptr);
// Whether a relative path is safe: no empty, "." or ".." components, not absolute.
bool is_safe_relative_path(std::string_view path);

nlohmann::json manifest_to_json(const Manifest& manifest);
Result<Manifest> manifest_from_json(const nlohmann::json& json);

std::string_view to_string(EntryKind kind);

} // namespace common
