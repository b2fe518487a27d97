#pragma once
// Writes a release's source tree from the blob store: files are copied (not
// hard-linked, so a build cannot corrupt the store), executables get 0755,
// symlinks are created last. Everything goes into a temporary directory
// (".tmp-ID" beside the release) that is renamed into place at the end.

#include <agent/store/blobs.hpp>
#include <common/manifest.hpp>
#include <common/result.hpp>

#include <filesystem>

namespace agent {

common::Status materialize(const common::Manifest& manifest, const BlobStore& blobs,
                           const std::filesystem::path& release_dir);

// The temporary directory materialize() uses for `release_dir`.
std::filesystem::path materialize_temp_dir(const std::filesystem::path& release_dir);
// Removes leftover temporary directories under an app's releases/ folder.
void remove_materialize_leftovers(const std::filesystem::path& releases_dir);

} // namespace agent
