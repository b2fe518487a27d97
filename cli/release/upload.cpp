// Upload: send the agent what it lacks of a release's tree. The tree goes as Merkle nodes
// (common/tree.hpp), level by level from the root: a folder the agent has is skipped whole,
// so an unchanged tree costs one small request and a one-file change the nodes on its path.
// The missing files then travel framed in a few streamed requests (POST /v1/blobs),
// compressed with zstd where it pays. An agent without /v1/trees is sent the flat manifest
// and one PUT per blob, as before.

#include <cli/release/steps.hpp>
#include <common/tree.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <zstd.h>

namespace cli::release {

namespace {

using common::ErrorKind;

// Blobs bigger than this go one per PUT (streamed to disk on the agent); the others in
// frames of requests of at most k_batch_bytes.
constexpr std::uint64_t k_frame_max = 16ull * 1024 * 1024;
constexpr std::uint64_t k_batch_bytes = 32ull * 1024 * 1024;
// Compressed bodies and blobs from this size up; a blob is sent compressed when that
// saves a tenth or more.
constexpr std::size_t k_compress_from = 512;

// Contents that are compressed already: not worth a try.
bool precompressed(std::string_view path) {
    static constexpr std::array<std::string_view, 24> k_types = {
        ".png",  ".jpg", ".jpeg", ".gif",   ".webp", ".avif", ".gz",   ".tgz",
        ".zip",  ".br",  ".zst",  ".xz",    ".bz2",  ".7z",   ".mp3",  ".mp4",
        ".webm", ".ogg", ".woff", ".woff2", ".jar",  ".whl",  ".heic", ".mov"};
    const auto dot = path.rfind('.');
    if (dot == std::string_view::npos || path.size() - dot > 6)
        return false;
    std::string ext(path.substr(dot));
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return std::find(k_types.begin(), k_types.end(), ext) != k_types.end();
}

std::string zstd_compress(std::string_view data, int level) {
    std::string out(ZSTD_compressBound(data.size()), '\0');
    const auto n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
    if (ZSTD_isError(n))
        return {};
    out.resize(n);
    return out;
}

// POST /v1/trees/missing, compressed when large.
common::Result<nlohmann::json> ask_trees(transport::Client& client, const nlohmann::json& body) {
    const auto text = body.dump();
    if (text.size() < 4096)
        return client.post_json("/v1/trees/missing", body);
    return client.post_bytes("/v1/trees/missing", zstd_compress(text, 3), "application/json",
                             "zstd");
}

void add_strings(const nlohmann::json& answer, const char* key, std::vector<std::string>& out) {
    if (auto it = answer.find(key); it != answer.end() && it->is_array())
        for (const auto& d : *it)
            if (d.is_string())
                out.push_back(d.get<std::string>());
}

// What the agent lacks of `tree`: walks the nodes it reports missing down from the root.
// Nullopt when the agent has no /v1/trees (an older agent).
common::Result<std::optional<std::set<std::string>>> missing_from_tree(transport::Client& client,
                                                                       const common::Tree& tree) {
    auto answer = ask_trees(client, {{"roots", {tree.root}}});
    if (!answer && answer.error().kind == ErrorKind::not_found)
        return std::optional<std::set<std::string>>();
    if (!answer)
        return answer.error();
    std::set<std::string> blobs;
    std::vector<std::string> nodes, found;
    add_strings(*answer, "missing_nodes", nodes);
    std::set<std::string> asked;
    while (!nodes.empty()) {
        auto bodies = nlohmann::json::array();
        for (const auto& digest : nodes) {
            auto it = tree.nodes.find(digest);
            if (it == tree.nodes.end())
                return common::make_error(
                    ErrorKind::internal,
                    fmt::format("the agent asked for a tree node that is not this tree's: {}",
                                digest));
            // A folder that appears twice (two empty-but-for-.gitkeep folders) is one node:
            // sent once.
            if (asked.insert(digest).second)
                bodies.push_back(it->second.bytes);
        }
        if (bodies.empty())
            break;
        answer = ask_trees(client, {{"nodes", std::move(bodies)}});
        if (!answer)
            return answer.error();
        nodes.clear();
        add_strings(*answer, "missing_nodes", nodes);
        found.clear();
        add_strings(*answer, "missing_blobs", found);
        blobs.insert(found.begin(), found.end());
    }
    return std::optional<std::set<std::string>>(std::move(blobs));
}

// The flat way: POST /v1/blobs/missing with every digest.
common::Result<std::set<std::string>>
missing_from_list(transport::Client& client, const std::map<std::string, std::uint64_t>& sizes) {
    nlohmann::json digests = nlohmann::json::array();
    nlohmann::json byte_counts = nlohmann::json::array();
    for (const auto& [digest, size] : sizes) {
        digests.push_back(digest);
        byte_counts.push_back(size);
    }
    // With the sizes, an agent whose disk cannot hold the upload refuses it
    // before anything is sent (507 disk_full, exit 6).
    auto answer = client.post_json(
        "/v1/blobs/missing", {{"digests", std::move(digests)}, {"sizes", std::move(byte_counts)}});
    if (!answer)
        return answer.error();
    std::vector<std::string> missing;
    add_strings(*answer, "missing", missing);
    return std::set<std::string>(missing.begin(), missing.end());
}

} // namespace

common::Result<output::UploadStats> upload_blobs(transport::Client& client,
                                                 const package::SourceTree& tree,
                                                 output::Printer& out, const std::string& host) {
    std::map<std::string, std::uint64_t> sizes; // distinct contents
    std::map<std::string, std::string_view> path_of;
    output::UploadStats stats;
    for (const auto& e : tree.manifest().entries) {
        ++stats.files;
        if (!e.digest.empty()) {
            sizes.emplace(e.digest, e.size);
            path_of.emplace(e.digest, e.path);
        }
    }
    for (const auto& [digest, size] : sizes)
        stats.bytes_total += size;
    stats.blobs_total = sizes.size();
    const auto sent_before = client.bytes_sent();

    const auto merkle = common::build_tree(tree.manifest());
    TRY_ASSIGN(auto from_tree, missing_from_tree(client, merkle));
    std::set<std::string> wanted;
    bool framed = from_tree.has_value();
    if (framed) {
        stats.tree = merkle.root;
        wanted = std::move(*from_tree);
    } else {
        TRY_ASSIGN(wanted, missing_from_list(client, sizes));
    }
    std::map<std::string, std::uint64_t> missing;
    for (const auto& digest : wanted)
        if (auto s = sizes.find(digest); s != sizes.end())
            missing.insert(*s);
    stats.blobs_missing = missing.size();
    for (const auto& [digest, size] : missing)
        stats.bytes_missing += size;
    out.emit(output::Uploading{host, stats});

    // Progress within a request where the transport can tell, and after each.
    std::uint64_t batch_raw = 0, batch_wire = 1;
    client.set_upload_progress([&](std::uint64_t sent_now) {
        const auto raw = batch_wire ? sent_now * batch_raw / batch_wire : 0;
        out.emit(output::UploadProgress{host, std::min(stats.bytes_sent + raw, stats.bytes_missing),
                                        stats.bytes_missing});
    });
    struct StopReporting {
        transport::Client& client;
        ~StopReporting() { client.set_upload_progress({}); }
    } stop_reporting{client};
    std::string body;
    std::uint64_t body_raw = 0;
    auto send_batch = [&]() -> common::Status {
        if (body.empty())
            return {};
        batch_raw = body_raw;
        batch_wire = std::max<std::uint64_t>(1, body.size());
        auto posted = client.post_bytes("/v1/blobs", body, transport::k_blobs_type);
        if (!posted)
            return posted.error();
        stats.bytes_sent += body_raw;
        out.emit(output::UploadProgress{host, stats.bytes_sent, stats.bytes_missing});
        body.clear();
        body_raw = 0;
        return {};
    };
    for (const auto& [digest, size] : missing) {
        auto bytes = tree.read(digest); // read again: contents are not kept in memory
        if (!bytes)
            return bytes.error();
        if (!framed || bytes->size() > k_frame_max) {
            batch_raw = batch_wire = 1;
            auto put = client.put_blob("/v1/blobs/" + digest, *bytes);
            if (!put)
                return put.error();
            stats.bytes_sent += bytes->size();
            out.emit(output::UploadProgress{host, stats.bytes_sent, stats.bytes_missing});
            continue;
        }
        std::string packed;
        if (bytes->size() >= k_compress_from && !precompressed(path_of[digest]))
            packed = zstd_compress(*bytes, 1);
        const bool zstd = !packed.empty() && packed.size() * 10 < bytes->size() * 9;
        const std::string_view payload = zstd ? std::string_view(packed) : *bytes;
        body += fmt::format("{} {} {} {}\n", digest, bytes->size(), zstd ? "zstd" : "raw",
                            payload.size());
        body += payload;
        body_raw += bytes->size();
        if (body.size() >= k_batch_bytes)
            TRY(send_batch());
    }
    TRY(send_batch());
    stats.wire_bytes = client.bytes_sent() - sent_before;
    out.emit(output::Uploaded{host, stats});
    return stats;
}

} // namespace cli::release
