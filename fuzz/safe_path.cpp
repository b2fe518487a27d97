// Paths an upload names, as the agent checks them before writing anything:
// - common::is_safe_relative_path (manifest paths, static.dir): an accepted path
//   has no ".." (or "." or empty) segment, is not absolute, holds no NUL or
//   backslash, and joined under a root the way materialize() joins it
//   (root / path) stays under that root, lexically;
// - a symlink "PATH\nTARGET" through common::validate_manifest: when accepted,
//   its target resolves inside the tree (lexically, and as the kernel would);
// - blob digests (PUT /v1/blobs/DIGEST): an accepted digest is 64 lower-case hex
//   digits and agent::BlobStore::path() puts it at ROOT/xx/DIGEST.
// Input: a path, optionally followed by '\n' and a symlink target.

#include <agent/store/blobs.hpp>
#include <common/hash.hpp>
#include <common/manifest.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "check.hpp"
#include "tree_model.hpp"

namespace {

namespace fs = std::filesystem;

const fs::path k_root = "/srv/agent/apps/app/releases/v1";

// Whether `joined`, normalized, is `root` itself (when allowed) or below it.
bool lexically_under(const fs::path& root, const fs::path& joined, bool root_itself = false) {
    const auto rel = joined.lexically_normal().lexically_relative(root);
    if (rel.empty() || *rel.begin() == "..")
        return false;
    return root_itself || rel != ".";
}

void check_path(std::string_view path) {
    if (!common::is_safe_relative_path(path))
        return;
    FUZZ_CHECK(!path.empty() && path.front() != '/');
    FUZZ_CHECK(path.find('\0') == std::string_view::npos);
    FUZZ_CHECK(path.find('\\') == std::string_view::npos);
    for (std::size_t start = 0;;) {
        const auto slash = path.find('/', start);
        const auto part =
            path.substr(start, slash == std::string_view::npos ? slash : slash - start);
        FUZZ_CHECK(!part.empty() && part != "." && part != "..");
        if (slash == std::string_view::npos)
            break;
        start = slash + 1;
    }
    const fs::path relative{std::string(path)};
    FUZZ_CHECK(relative.is_relative() && !relative.has_root_path());
    const fs::path joined = k_root / relative; // as agent/deploy/materialize.cpp writes it
    FUZZ_CHECK(lexically_under(k_root, joined));
    FUZZ_CHECK(joined.lexically_normal() == joined);
}

void check_symlink(std::string_view path, std::string_view target) {
    const common::Manifest manifest{{common::ManifestEntry{
        std::string(path), common::EntryKind::symlink, {}, 0, std::string(target)}}};
    if (!common::validate_manifest(manifest))
        return;
    FUZZ_CHECK(target.find('\0') == std::string_view::npos && !target.empty() &&
               target.front() != '/');
    const fs::path link = k_root / fs::path(std::string(path));
    FUZZ_CHECK(lexically_under(k_root, link.parent_path() / fs::path(std::string(target)), true));
    FUZZ_CHECK(fuzz::TreeModel(manifest).symlink_stays_inside(std::string(path)));
}

void check_digest(std::string_view digest) {
    if (!common::is_sha256_hex(digest))
        return;
    FUZZ_CHECK(digest.size() == 64);
    FUZZ_CHECK(digest.find_first_not_of("0123456789abcdef") == std::string_view::npos);
    const fs::path blobs = "/srv/agent/blobs";
    const auto path = agent::BlobStore(blobs).path(std::string(digest));
    FUZZ_CHECK(path == blobs / std::string(digest.substr(0, 2)) / std::string(digest));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto newline = input.find('\n');
    const auto path = input.substr(0, newline);
    check_path(path);
    check_digest(path);
    if (newline != std::string_view::npos)
        check_symlink(path, input.substr(newline + 1));
    return 0;
}
