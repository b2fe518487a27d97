// Upload: send the agent the blobs of a release's files that it does not have yet.

#include <cli/release/steps.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

namespace cli::release {

common::Result<output::UploadStats> upload_blobs(transport::Client& client,
                                                 const package::SourceTree& tree,
                                                 output::Printer& out, const std::string& host) {
    std::map<std::string, std::uint64_t> sizes; // distinct contents
    output::UploadStats stats;
    for (const auto& e : tree.manifest().entries) {
        ++stats.files;
        if (!e.digest.empty())
            sizes.emplace(e.digest, e.size);
    }
    nlohmann::json digests = nlohmann::json::array();
    nlohmann::json byte_counts = nlohmann::json::array();
    for (const auto& [digest, size] : sizes) {
        digests.push_back(digest);
        byte_counts.push_back(size);
        stats.bytes_total += size;
    }
    stats.blobs_total = sizes.size();
    // With the sizes, an agent whose disk cannot hold the upload refuses it
    // before anything is sent (507 disk_full, exit 6).
    auto answer = client.post_json("/v1/blobs/missing", {{"digests", std::move(digests)},
                                                         {"sizes", std::move(byte_counts)}});
    if (!answer)
        return answer.error();
    std::map<std::string, std::uint64_t> missing;
    if (auto it = answer->find("missing"); it != answer->end() && it->is_array())
        for (const auto& d : *it)
            if (d.is_string())
                if (auto s = sizes.find(d.get<std::string>()); s != sizes.end())
                    missing.insert(*s);
    stats.blobs_missing = missing.size();
    for (const auto& [digest, size] : missing)
        stats.bytes_missing += size;
    out.emit(output::Uploading{host, stats});
    // Progress within a big blob where the transport can tell, and after each blob.
    client.set_upload_progress([&](std::uint64_t sent_now) {
        out.emit(output::UploadProgress{
            host, std::min(stats.bytes_sent + sent_now, stats.bytes_missing), stats.bytes_missing});
    });
    struct StopReporting {
        transport::Client& client;
        ~StopReporting() { client.set_upload_progress({}); }
    } stop_reporting{client};
    for (const auto& [digest, size] : missing) {
        auto bytes = tree.read(digest); // read again: contents are not kept in memory
        if (!bytes)
            return bytes.error();
        auto put = client.put_blob("/v1/blobs/" + digest, *bytes);
        if (!put)
            return put.error();
        stats.bytes_sent += bytes->size();
        out.emit(output::UploadProgress{host, stats.bytes_sent, stats.bytes_missing});
    }
    out.emit(output::Uploaded{host, stats});
    return stats;
}

} // namespace cli::release
