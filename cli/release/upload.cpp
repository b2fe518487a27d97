// Upload: send the agent what it lacks of a release's tree. The tree goes as Merkle nodes
// (common/tree.hpp), level by level from the root: a folder the agent has is skipped whole,
// so an unchanged tree costs one small request and a one-file change the nodes on its path.
// The missing files then travel framed in a few streamed requests (POST /v1/blobs),
// compressed with zstd where it pays. An agent without /v1/trees is sent the flat manifest
// and one PUT per blob, as before.

#include <cli/release/steps.hpp>
#include <common/ascii.hpp>
#include <common/tree.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <zstd.h>

namespace cli::release {

namespace {

using common::ErrorKind;

// Blobs bigger than this go one per PUT (streamed to disk on the agent); the others in
// frames of requests of at most k_batch_bytes.
constexpr std::uint64_t k_frame_max = 16ull * 1024 * 1024;
constexpr std::uint64_t k_batch_bytes = 8ull * 1024 * 1024;
// Compressed bodies from this size up (JSON of tree nodes, batches of frames); a batch is
// sent compressed when that saves a tenth or more.
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
    const std::string ext = common::ascii_lower(path.substr(dot));
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
    return client.post_bytes("/v1/trees/missing", zstd_compress(text, 1), "application/json",
                             "zstd");
}

void add_strings(const nlohmann::json& answer, const char* key, std::vector<std::string>& out) {
    if (auto it = answer.find(key); it != answer.end() && it->is_array())
        for (const auto& d : *it)
            if (d.is_string())
                out.push_back(d.get<std::string>());
}

// What the agent lacks of the tree: walks the nodes it reports missing down from the root,
// building them (`merkle`) only when it lacks any. Nullopt when the agent has no
// /v1/trees (an older agent). `root` is the tree's root when known (from an earlier
// deploy of the same git tree), else empty; it is the root asked about once this returns.
// `answered`: the agent's answer about that known root, when the caller asked already.
common::Result<std::optional<std::vector<std::string>>>
missing_from_tree(transport::Client& client, const package::SourceTree& source, std::string& root,
                  std::optional<common::Tree>& merkle,
                  std::optional<common::Result<nlohmann::json>> answered = std::nullopt) {
    auto build = [&] {
        merkle = common::build_tree(source.manifest());
        root = merkle->root;
    };
    if (root.empty())
        build();
    auto answer = answered ? std::move(*answered) : ask_trees(client, {{"roots", {root}}});
    if (!answer && answer.error().kind == ErrorKind::not_found)
        return std::optional<std::vector<std::string>>();
    if (!answer)
        return answer.error();
    std::vector<std::string> blobs, nodes;
    add_strings(*answer, "missing_nodes", nodes);
    if (!nodes.empty() && !merkle) { // the agent lacks some: the nodes are needed
        const auto known = root;
        build();
        if (root != known) { // a stale cache line: ask about the tree's own root
            answer = ask_trees(client, {{"roots", {root}}});
            if (!answer)
                return answer.error();
            nodes.clear();
            add_strings(*answer, "missing_nodes", nodes);
        }
    }
    std::set<std::string> asked;
    while (!nodes.empty()) {
        const auto& tree = *merkle; // built above: the agent lacked a node
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
        add_strings(*answer, "missing_blobs", blobs);
    }
    return std::optional<std::vector<std::string>>(std::move(blobs));
}

// A distinct content of the tree: its digest, size and the path of a file that has it.
struct Content {
    std::string_view digest;
    std::uint64_t size = 0;
    std::string_view path;
};

// The flat way: POST /v1/blobs/missing with every digest.
common::Result<std::vector<std::string>> missing_from_list(transport::Client& client,
                                                           const std::vector<Content>& contents) {
    nlohmann::json digests = nlohmann::json::array();
    nlohmann::json byte_counts = nlohmann::json::array();
    for (const auto& c : contents) {
        digests.push_back(c.digest);
        byte_counts.push_back(c.size);
    }
    // With the sizes, an agent whose disk cannot hold the upload refuses it
    // before anything is sent (507 disk_full, exit 6).
    auto answer = client.post_json(
        "/v1/blobs/missing", {{"digests", std::move(digests)}, {"sizes", std::move(byte_counts)}});
    if (!answer)
        return answer.error();
    std::vector<std::string> missing;
    add_strings(*answer, "missing", missing);
    return missing;
}

// What the packer hands the sender: a body of frames (POST /v1/blobs), one big blob
// (PUT, `digest` set), or the error that stopped it.
struct Parcel {
    std::string body;
    std::uint64_t raw = 0; // the contents' bytes before compression
    std::string digest;
    common::Error error;
    std::string encoding; // "zstd": the body is compressed as a whole
};

// Compresses a body of frames as a whole where that saves a tenth or more: small files
// compress together (one by one they would not), and the agent decodes it as a stream.
void compress_batch(Parcel& batch) {
    if (batch.body.size() < k_compress_from)
        return;
    auto packed = zstd_compress(batch.body, 1);
    if (packed.empty() || packed.size() * 10 >= batch.body.size() * 9)
        return;
    batch.body = std::move(packed);
    batch.encoding = "zstd";
}

// A queue of at most two parcels between the packer and the senders.
class Parcels {
  public:
    void put(Parcel parcel) {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [&] { return m_queue.size() < 2 || m_cancelled; });
        if (m_cancelled)
            return;
        m_queue.push_back(std::move(parcel));
        m_cv.notify_all();
    }
    void finish() {
        std::lock_guard lock(m_mutex);
        m_finished = true;
        m_cv.notify_all();
    }
    void cancel() {
        std::lock_guard lock(m_mutex);
        m_cancelled = true;
        m_cv.notify_all();
    }
    bool cancelled() {
        std::lock_guard lock(m_mutex);
        return m_cancelled;
    }
    // The next parcel; nullopt once the packer finished and all were taken, or once
    // cancelled (a sender failed).
    std::optional<Parcel> take() {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [&] { return !m_queue.empty() || m_finished || m_cancelled; });
        if (m_queue.empty() || m_cancelled)
            return std::nullopt;
        auto parcel = std::move(m_queue.front());
        m_queue.pop_front();
        m_cv.notify_all();
        return parcel;
    }

  private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<Parcel> m_queue;
    bool m_finished = false;
    bool m_cancelled = false;
};

// Reads each missing blob again (contents are not kept in memory) and packs the frames into
// bodies of about k_batch_bytes, compressed where it pays.
void pack(Parcels& parcels, const package::SourceTree& tree, const std::vector<Content>& missing,
          bool framed) {
    Parcel batch, stored;
    for (const auto& content : missing) {
        if (parcels.cancelled())
            break;
        const std::string digest(content.digest);
        auto bytes = tree.read(digest, content.path, content.size);
        if (!bytes) {
            parcels.put(Parcel{{}, 0, {}, bytes.error(), {}});
            break;
        }
        if (!framed || bytes->size() > k_frame_max) {
            const auto raw = bytes->size();
            parcels.put(Parcel{std::move(*bytes), raw, digest, {}, {}});
            continue;
        }
        // Compressed already (an image, an archive): in a batch sent as it is; the rest
        // in one compressed as a whole.
        const bool as_is = precompressed(content.path);
        Parcel& into = as_is ? stored : batch;
        into.body += fmt::format("{} {} raw {}\n", digest, bytes->size(), bytes->size());
        into.body += *bytes;
        into.raw += bytes->size();
        if (into.body.size() >= k_batch_bytes) {
            if (!as_is)
                compress_batch(into);
            parcels.put(std::move(into));
            into = Parcel{};
        }
    }
    if (!batch.body.empty()) {
        compress_batch(batch);
        parcels.put(std::move(batch));
    }
    if (!stored.body.empty())
        parcels.put(std::move(stored));
    parcels.finish();
}

} // namespace

common::Result<output::UploadStats> upload_blobs(transport::Client& client,
                                                 const package::SourceTree& tree,
                                                 output::Printer& out, const std::string& host) {
    output::UploadStats stats;
    const auto sent_before = client.bytes_sent();
    auto root = tree.known_root();
    std::optional<common::Result<nlohmann::json>> asked; // about the recorded root
    if (!root.empty() && !tree.loaded()) {
        // A tree deployed before, packaged from its record: one question, and when the
        // agent has it whole, nothing more (not even the manifest).
        auto answer = ask_trees(client, {{"roots", {root}}});
        if (!answer && answer.error().kind != ErrorKind::not_found)
            return answer.error();
        std::vector<std::string> nodes;
        if (answer)
            add_strings(*answer, "missing_nodes", nodes);
        if (answer && nodes.empty()) {
            const auto figures = tree.figures();
            stats.files = figures.files;
            stats.blobs_total = figures.blobs;
            stats.bytes_total = figures.blob_bytes;
            stats.tree = root;
            stats.wire_bytes = client.bytes_sent() - sent_before;
            out.emit(output::Uploading{host, stats});
            out.emit(output::Uploaded{host, stats});
            return stats;
        }
        asked = std::move(answer); // not asked again below
    }
    // The agent lacks part of the tree, or is older (the manifest itself, or the flat list).
    TRY(tree.load());
    // The distinct contents, sorted by digest (views into the manifest: 18,000 files make
    // no copies of their digests and paths).
    std::vector<Content> contents;
    contents.reserve(tree.manifest().entries.size());
    for (const auto& e : tree.manifest().entries) {
        ++stats.files;
        if (!e.digest.empty())
            contents.push_back({e.digest, e.size, e.path});
    }
    std::stable_sort(contents.begin(), contents.end(),
                     [](const Content& a, const Content& b) { return a.digest < b.digest; });
    contents.erase(
        std::unique(contents.begin(), contents.end(),
                    [](const Content& a, const Content& b) { return a.digest == b.digest; }),
        contents.end());
    for (const auto& c : contents)
        stats.bytes_total += c.size;
    stats.blobs_total = contents.size();

    std::optional<common::Tree> merkle;
    TRY_ASSIGN(auto from_tree, missing_from_tree(client, tree, root, merkle, std::move(asked)));
    std::vector<std::string> wanted;
    bool framed = from_tree.has_value();
    if (framed) {
        stats.tree = root;
        tree.remember_root(root, {stats.files, tree.manifest().total_bytes(), stats.blobs_total,
                                  stats.bytes_total});
        wanted = std::move(*from_tree);
    } else {
        TRY_ASSIGN(wanted, missing_from_list(client, contents));
    }
    // The contents the agent lacks, in digest order (both lists sorted), each once.
    std::sort(wanted.begin(), wanted.end());
    wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
    std::vector<Content> missing;
    auto next = contents.begin();
    for (const auto& digest : wanted) {
        next = std::lower_bound(
            next, contents.end(), digest,
            [](const Content& a, const std::string& d) { return a.digest < std::string_view(d); });
        if (next != contents.end() && next->digest == digest)
            missing.push_back(*next);
    }
    stats.blobs_missing = missing.size();
    for (const auto& c : missing)
        stats.bytes_missing += c.size;
    out.emit(output::Uploading{host, stats});

    // Two connections when there is more than one request to send: the agent makes one
    // batch durable (synced, then renamed into place) while it receives the next.
    std::unique_ptr<transport::Client> second;
    if (missing.size() > 1 && stats.bytes_missing > k_batch_bytes)
        second = client.another();
    std::vector<transport::Client*> senders{&client};
    if (second)
        senders.push_back(second.get());

    // Progress within each request where the transport can tell, and after each.
    struct InFlight {
        std::uint64_t raw = 0, wire = 1, reported = 0;
    };
    std::vector<InFlight> in_flight(senders.size());
    std::mutex progress_mutex;
    auto report = [&] { // holds progress_mutex
        std::uint64_t total = stats.bytes_sent;
        for (const auto& f : in_flight)
            total += f.reported;
        out.emit(output::UploadProgress{host, std::min(total, stats.bytes_missing),
                                        stats.bytes_missing});
    };
    for (std::size_t i = 0; i < senders.size(); ++i)
        senders[i]->set_upload_progress([&, i](std::uint64_t sent_now) {
            std::lock_guard lock(progress_mutex);
            auto& f = in_flight[i];
            f.reported = sent_now * f.raw / f.wire;
            report();
        });
    struct StopReporting {
        const std::vector<transport::Client*>& senders;
        ~StopReporting() {
            for (auto* s : senders)
                s->set_upload_progress({});
        }
    } stop_reporting{senders};
    // A thread reads and compresses the next request while these send the last ones.
    Parcels parcels;
    std::thread packer([&] { pack(parcels, tree, missing, framed); });
    struct JoinPacker {
        Parcels& parcels;
        std::thread& packer;
        ~JoinPacker() {
            parcels.cancel();
            packer.join();
        }
    } join_packer{parcels, packer};
    std::optional<common::Error> failure; // the first, under progress_mutex
    auto send = [&](std::size_t i) {
        auto& sender = *senders[i];
        while (auto parcel = parcels.take()) {
            common::Status sent;
            if (!parcel->error.message.empty()) {
                sent = parcel->error;
            } else {
                {
                    std::lock_guard lock(progress_mutex);
                    in_flight[i] = {parcel->raw, std::max<std::uint64_t>(1, parcel->body.size()),
                                    0};
                }
                auto answer = parcel->digest.empty()
                                  ? sender.post_bytes("/v1/blobs", parcel->body,
                                                      transport::k_blobs_type, parcel->encoding)
                                  : sender.put_blob("/v1/blobs/" + parcel->digest, parcel->body);
                if (!answer)
                    sent = answer.error();
            }
            std::lock_guard lock(progress_mutex);
            in_flight[i] = {};
            if (!sent) {
                if (!failure)
                    failure = sent.error();
                parcels.cancel(); // the other sender stops after its request
                return;
            }
            stats.bytes_sent += parcel->raw;
            report();
        }
    };
    std::optional<std::thread> side;
    if (senders.size() > 1)
        side.emplace(send, 1);
    send(0);
    if (side)
        side->join();
    if (failure)
        return *failure;
    stats.wire_bytes = client.bytes_sent() - sent_before + (second ? second->bytes_sent() : 0);
    out.emit(output::Uploaded{host, stats});
    return stats;
}

} // namespace cli::release
