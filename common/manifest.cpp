#include <common/hash.hpp>
#include <common/manifest.hpp>
#include <common/storable_path.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace common {

namespace {

Error bad(std::string message) {
    return make_error(ErrorKind::bad_request, std::move(message));
}

// Splits "a/b/c" into components; empty components are kept so callers can reject them.
std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (true) {
        const auto slash = path.find('/', start);
        parts.push_back(
            path.substr(start, slash == std::string_view::npos ? slash : slash - start));
        if (slash == std::string_view::npos)
            break;
        start = slash + 1;
    }
    return parts;
}

// Whether a symlink at `link_path` with relative `target` resolves inside the tree.
// The walk is lexical, which is exact only while no intermediate component is
// itself a symlink: validate_manifest() refuses targets that pass through one.
bool symlink_stays_inside(std::string_view link_path, std::string_view target) {
    if (target.empty() || target.front() == '/')
        return false;
    auto parts = split_path(link_path);
    long depth = static_cast<long>(parts.size()) - 1; // the link's directory
    for (auto part : split_path(target)) {
        if (part.empty() || part == ".")
            continue;
        if (part == "..") {
            if (--depth < 0)
                return false;
        } else {
            ++depth;
        }
    }
    return true;
}

// The first symlink of `symlinks` that the target of `link_path` goes through
// before its last component ("l1/.." through l1), if any.
std::optional<std::string> symlink_on_the_way(const std::string& link_path, std::string_view target,
                                              const std::unordered_set<std::string>& symlinks) {
    auto dir = split_path(link_path);
    dir.pop_back();
    std::vector<std::string> current(dir.begin(), dir.end());
    auto parts = split_path(target);
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        const auto part = parts[i];
        if (part.empty() || part == ".")
            continue;
        if (part == "..") {
            if (!current.empty())
                current.pop_back();
            continue;
        }
        current.emplace_back(part);
        std::string joined;
        for (const auto& c : current)
            joined += (joined.empty() ? "" : "/") + c;
        if (symlinks.count(joined))
            return joined;
    }
    return std::nullopt;
}

// A path (or a symlink's target) the store cannot keep faithfully, refused before any
// other check prints it.
std::optional<Error> unstorable(const ManifestEntry& entry) {
    if (auto flaw = find_path_flaw(entry.path))
        return bad(fmt::format("manifest path \"{}\" contains {} at byte {}: {}",
                               escape_path(entry.path), flaw->what, flaw->offset,
                               k_storable_path_rule));
    if (entry.kind != EntryKind::symlink)
        return std::nullopt;
    if (auto flaw = find_path_flaw(entry.target))
        return bad(fmt::format("symlink \"{}\" has a target \"{}\" that contains {} at byte {}: "
                               "symlink targets must be valid UTF-8 without control characters "
                               "(U+0000-U+001F, U+007F-U+009F)",
                               entry.path, escape_path(entry.target), flaw->what, flaw->offset));
    return std::nullopt;
}

Status validate_entry(const ManifestEntry& entry, ManifestFault& fault) {
    if (entry.path.size() > k_max_path_length)
        return bad(fmt::format("manifest path longer than {} bytes", k_max_path_length));
    if (auto error = unstorable(entry)) {
        fault = ManifestFault::unstorable_path;
        return *error;
    }
    if (!is_safe_relative_path(entry.path))
        return bad(fmt::format("manifest path \"{}\" is not a safe relative path (absolute paths, "
                               "empty, \".\" and \"..\" components are refused)",
                               entry.path));
    if (entry.kind == EntryKind::symlink) {
        if (entry.target.size() > k_max_path_length ||
            entry.target.find('\0') != std::string::npos ||
            !symlink_stays_inside(entry.path, entry.target))
            return bad(fmt::format("symlink \"{}\" -> \"{}\" leads out of the source tree",
                                   entry.path, entry.target));
    } else if (!is_sha256_hex(entry.digest)) {
        return bad(fmt::format("manifest entry \"{}\" has an invalid digest", entry.path));
    }
    return {};
}

} // namespace

std::string_view to_string(EntryKind kind) {
    switch (kind) {
    case EntryKind::file:
        return "file";
    case EntryKind::executable:
        return "exec";
    case EntryKind::symlink:
        return "symlink";
    }
    return "file";
}

bool is_safe_relative_path(std::string_view path) {
    if (path.empty() || path.front() == '/' || path.find('\0') != std::string_view::npos ||
        path.find('\\') != std::string_view::npos)
        return false;
    // Each '/'-separated part (no vector of them: every path of a deployment comes here).
    for (std::size_t start = 0;;) {
        const auto slash = path.find('/', start);
        const auto part =
            path.substr(start, slash == std::string_view::npos ? slash : slash - start);
        if (part.empty() || part == "." || part == "..")
            return false;
        if (slash == std::string_view::npos)
            return true;
        start = slash + 1;
    }
}

std::uint64_t Manifest::total_bytes() const {
    std::uint64_t total = 0;
    for (const auto& e : entries)
        total += e.size;
    return total;
}

std::vector<std::string> Manifest::blob_digests() const {
    // Sorted and made unique as views, copied once: a tree of 20,000 files has about as
    // many distinct contents.
    std::vector<std::string_view> digests;
    digests.reserve(entries.size());
    for (const auto& entry : entries)
        if (entry.kind != EntryKind::symlink && !entry.digest.empty())
            digests.emplace_back(entry.digest);
    std::sort(digests.begin(), digests.end());
    digests.erase(std::unique(digests.begin(), digests.end()), digests.end());
    return {digests.begin(), digests.end()};
}

std::string Manifest::digest() const {
    std::vector<const ManifestEntry*> sorted;
    sorted.reserve(entries.size());
    for (const auto& e : entries)
        sorted.push_back(&e);
    const auto by_path = [](const auto* a, const auto* b) { return a->path < b->path; };
    if (!std::is_sorted(sorted.begin(), sorted.end(), by_path)) // mostly they are
        std::sort(sorted.begin(), sorted.end(), by_path);
    // Hashed in chunks of many entries: one update per field cost more than the hashing.
    constexpr std::size_t k_chunk = 64 * 1024;
    Sha256 hash;
    std::string chunk;
    chunk.reserve(k_chunk + 2 * k_max_path_length + 128);
    for (const auto* e : sorted) {
        // Fields are NUL-separated: no path, kind, digest or target can contain NUL.
        for (std::string_view field :
             {std::string_view(e->path), to_string(e->kind),
              std::string_view(e->kind == EntryKind::symlink ? e->target : e->digest)}) {
            chunk.append(field);
            chunk.push_back('\0');
        }
        fmt::format_to(std::back_inserter(chunk), "{}\n", e->size);
        if (chunk.size() >= k_chunk) {
            hash.update(chunk);
            chunk.clear();
        }
    }
    hash.update(chunk);
    return hash.final_hex();
}

Status validate_manifest(const Manifest& manifest, ManifestFault* fault) {
    ManifestFault ignored = ManifestFault::malformed;
    ManifestFault& why = fault ? *fault : ignored;
    why = ManifestFault::malformed;
    if (manifest.entries.size() > k_max_manifest_entries)
        return bad(fmt::format("manifest has {} entries; the limit is {}", manifest.entries.size(),
                               k_max_manifest_entries));
    std::unordered_map<std::string_view, EntryKind> kinds;
    kinds.reserve(manifest.entries.size());
    for (const auto& entry : manifest.entries) {
        TRY(validate_entry(entry, why));
        if (!kinds.emplace(entry.path, entry.kind).second)
            return bad(fmt::format("manifest lists \"{}\" twice", entry.path));
    }
    // No symlink target may pass through another symlink: "l2 -> l1/.." with
    // "l1 -> ." would climb out of the tree while looking inside it.
    std::unordered_set<std::string> symlinks;
    for (const auto& entry : manifest.entries)
        if (entry.kind == EntryKind::symlink)
            symlinks.insert(entry.path);
    for (const auto& entry : manifest.entries) {
        if (entry.kind != EntryKind::symlink)
            continue;
        if (auto through = symlink_on_the_way(entry.path, entry.target, symlinks))
            return bad(fmt::format("symlink \"{}\" -> \"{}\" goes through the symlink \"{}\"",
                                   entry.path, entry.target, *through));
    }
    // No entry may live below a file or a symlink ("link/x" through a symlink "link"). The
    // folders of the entry before, found to be neither, are not looked up again: in a
    // sorted manifest most entries share them.
    std::string_view checked; // the last entry's folder ("a/b" for "a/b/c"), every prefix checked
    for (const auto& entry : manifest.entries) {
        const std::string_view path = entry.path;
        const auto common = static_cast<std::size_t>(
            std::mismatch(path.begin(), path.begin() + std::min(path.size(), checked.size()),
                          checked.begin())
                .first -
            path.begin());
        // A slash before `common` ends a prefix of `checked`; one at `common` too when
        // `checked` ends there.
        auto slash = path.find('/', common);
        if (slash != std::string_view::npos && slash == common && common == checked.size())
            slash = path.find('/', slash + 1);
        const auto last_slash = path.rfind('/');
        checked =
            last_slash == std::string_view::npos ? std::string_view() : path.substr(0, last_slash);
        for (; slash != std::string::npos; slash = entry.path.find('/', slash + 1)) {
            auto it = kinds.find(std::string_view(entry.path).substr(0, slash));
            if (it != kinds.end())
                return bad(
                    fmt::format("manifest path \"{}\" goes through the {} \"{}\"", entry.path,
                                it->second == EntryKind::symlink ? "symlink" : "file", it->first));
        }
    }
    return {};
}

nlohmann::json manifest_to_json(const Manifest& manifest) {
    auto files = nlohmann::json::array();
    for (const auto& e : manifest.entries) {
        nlohmann::json j{{"path", e.path}, {"mode", to_string(e.kind)}};
        if (e.kind == EntryKind::symlink) {
            j["target"] = e.target;
        } else {
            j["digest"] = e.digest;
            j["size"] = e.size;
        }
        files.push_back(std::move(j));
    }
    return nlohmann::json{{"files", std::move(files)}};
}

Result<Manifest> manifest_from_json(const nlohmann::json& json) {
    if (!json.is_object() || !json.contains("files") || !json["files"].is_array())
        return bad("manifest must be an object with a \"files\" array");
    const auto& files = json["files"];
    if (files.size() > k_max_manifest_entries)
        return bad(fmt::format("manifest has {} entries; the limit is {}", files.size(),
                               k_max_manifest_entries));
    Manifest manifest;
    manifest.entries.reserve(files.size());
    for (const auto& f : files) {
        if (!f.is_object() || !f.contains("path") || !f["path"].is_string())
            return bad("every manifest entry needs a string \"path\"");
        ManifestEntry e;
        e.path = f["path"].get<std::string>();
        if (f.contains("mode") && !f["mode"].is_string())
            return bad(fmt::format("manifest entry \"{}\" has a \"mode\" that is not a string",
                                   escape_path(e.path)));
        const auto mode = f.value("mode", std::string("file"));
        if (mode == "file" || mode == "exec") {
            e.kind = mode == "file" ? EntryKind::file : EntryKind::executable;
            if (!f.contains("digest") || !f["digest"].is_string())
                return bad(fmt::format("manifest entry \"{}\" needs a string \"digest\"",
                                       escape_path(e.path)));
            e.digest = f["digest"].get<std::string>();
            e.size_declared = f.contains("size");
            if (e.size_declared) {
                if (!f["size"].is_number_unsigned())
                    return bad(fmt::format("manifest entry \"{}\" has an invalid size",
                                           escape_path(e.path)));
                e.size = f["size"].get<std::uint64_t>();
            }
        } else if (mode == "symlink") {
            e.kind = EntryKind::symlink;
            if (!f.contains("target") || !f["target"].is_string())
                return bad(
                    fmt::format("symlink \"{}\" needs a string \"target\"", escape_path(e.path)));
            e.target = f["target"].get<std::string>();
        } else {
            return bad(fmt::format("manifest entry \"{}\" has unknown mode \"{}\" (expected file, "
                                   "exec or symlink)",
                                   escape_path(e.path), escape_path(mode)));
        }
        manifest.entries.push_back(std::move(e));
    }
    return manifest;
}

} // namespace common
