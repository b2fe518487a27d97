#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <common/hash.hpp>
#include <common/parallel.hpp>
#include <common/storable_path.hpp>
#include <common/tree.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <system_error>
#include <unordered_set>
#include <zstd.h>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;

// The largest blob a frame of POST /v1/blobs carries (bigger ones go one per PUT).
constexpr std::uint64_t k_max_frame_blob = 64ull * 1024 * 1024;

common::Result<std::vector<std::string>> digest_list(const nlohmann::json& body) {
    if (!body.is_object() || !body.contains("digests") || !body["digests"].is_array())
        return make_error(ErrorKind::bad_request, R"(expected {"digests": ["<sha256>", ...]})");
    std::vector<std::string> digests;
    for (const auto& item : body["digests"]) {
        if (!item.is_string() || !common::is_sha256_hex(item.get_ref<const std::string&>()))
            return make_error(ErrorKind::bad_request,
                              fmt::format("not a sha256 digest: {}", describe_value(item)));
        digests.push_back(item.get<std::string>());
    }
    return digests;
}

// "sizes" (optional, deployctl sends it): the size of each digest's content,
// in the same order, so that an upload the disk cannot hold is refused before
// any of it is sent.
common::Result<std::vector<std::uint64_t>> size_list(const nlohmann::json& body,
                                                     std::size_t count) {
    std::vector<std::uint64_t> sizes;
    auto it = body.find("sizes");
    if (it == body.end())
        return sizes;
    if (!it->is_array() || it->size() != count)
        return make_error(ErrorKind::bad_request,
                          R"("sizes" must be an array of byte counts, one per digest)");
    for (const auto& item : *it) {
        if (!item.is_number_unsigned())
            return make_error(ErrorKind::bad_request,
                              fmt::format("not a byte count: {}", describe_value(item)));
        sizes.push_back(item.get<std::uint64_t>());
    }
    return sizes;
}

Response missing(ApiContext& context, const Request& request) {
    auto body = parse_json_body(request, false);
    if (!body)
        return error_response(body.error());
    auto digests = digest_list(*body);
    if (!digests)
        return error_response(digests.error());
    auto sizes = size_list(*body, digests->size());
    if (!sizes)
        return error_response(sizes.error());
    // What a deploy asks about it is about to use: no collection takes it
    // from under the upload and the deployment that follow.
    context.blobs.pin(*digests);
    std::set<std::string> seen;
    std::vector<std::string> lacking;
    std::uint64_t upload = 0;
    for (std::size_t i = 0; i < digests->size(); ++i) {
        const auto& digest = (*digests)[i];
        if (seen.insert(digest).second && !context.blobs.has(digest)) {
            lacking.push_back(digest);
            upload += sizes->empty() ? 0 : (*sizes)[i];
        }
    }
    // Each blob is a file: the bytes and the inodes they need.
    if (upload > 0 || !lacking.empty())
        if (auto room = context.disk.check(upload, "this upload", lacking.size()); !room)
            return error_response(room.error());
    return json_response(200, {{"missing", lacking}});
}

Response put(ApiContext& context, const Request& request) {
    const auto& digest = request.params.at("digest");
    context.blobs.pin({digest}); // before it is stored: a deployment will name it
    if (auto stored = context.blobs.adopt(digest, request.body_file); !stored) {
        auto error = stored.error();
        if (error.kind == ErrorKind::io ||
            error.kind == ErrorKind::disk_full) // which step failed, and why
            error.message = "cannot store the uploaded blob " + digest + ": " + error.message;
        return error_response(error);
    }
    std::error_code ec;
    const auto size = std::filesystem::file_size(context.blobs.path(digest), ec);
    if (ec)
        return error_response(
            make_error(ErrorKind::internal,
                       fmt::format("blob {} stored but unreadable: {}", digest, ec.message())));
    return json_response(201, {{"digest", digest}, {"size", size}});
}

// --- POST /v1/blobs: many blobs in one streamed body (docs/api.md, "Uploading") ---------

// Reads the body's frames in order as it arrives, decompressing a body sent
// Content-Encoding zstd.
class FrameReader {
  public:
    FrameReader(BodySource& body, bool zstd)
        : m_in(body), m_stream(zstd ? ZSTD_createDStream() : nullptr), m_zstd(zstd) {}
    ~FrameReader() { ZSTD_freeDStream(m_stream); }
    FrameReader(const FrameReader&) = delete;
    FrameReader& operator=(const FrameReader&) = delete;
    bool open() const { return !m_zstd || m_stream; }
    // What went wrong with a compressed body ("" if nothing).
    const std::string& error() const { return m_error; }
    bool at_end() { return m_pos == m_out.size() && !fill(); }
    // The next frame's header line, without its '\n' (false: none, or longer than 200 bytes).
    bool header(std::string& line) {
        line.clear();
        while (m_pos < m_out.size() || fill()) {
            const char c = m_out[m_pos++];
            if (c == '\n')
                return true;
            if (line.size() >= 200)
                return false;
            line += c;
        }
        return false;
    }
    bool payload(std::string& out, std::size_t length) {
        out.clear();
        out.reserve(length);
        while (out.size() < length) {
            if (m_pos == m_out.size() && !fill())
                return false;
            const auto n = std::min(length - out.size(), m_out.size() - m_pos);
            out.append(m_out, m_pos, n);
            m_pos += n;
        }
        return true;
    }

  private:
    // More bytes in m_out; false at the end of the body (or on an error).
    bool fill() {
        m_out.clear();
        m_pos = 0;
        while (m_out.empty()) {
            if (m_input.pos == m_input.size) {
                const auto got = m_in.read(m_raw.data(), m_raw.size());
                if (got < 0)
                    m_error = "the body could not be read"; // the connection answers
                if (got <= 0)
                    return false;
                m_input = {m_raw.data(), static_cast<std::size_t>(got), 0};
            }
            if (!m_zstd) {
                m_out.assign(m_raw.data(), m_input.size);
                m_input.pos = m_input.size;
                break;
            }
            m_out.resize(ZSTD_DStreamOutSize());
            ZSTD_outBuffer output{m_out.data(), m_out.size(), 0};
            const auto rc = ZSTD_decompressStream(m_stream, &output, &m_input);
            if (ZSTD_isError(rc)) {
                m_error =
                    std::string("the zstd body does not decompress: ") + ZSTD_getErrorName(rc);
                m_out.clear();
                return false;
            }
            m_out.resize(output.pos);
        }
        return true;
    }

    BodySource& m_in;
    ZSTD_DStream* m_stream;
    bool m_zstd;
    std::vector<char> m_raw = std::vector<char>(1 << 17);
    ZSTD_inBuffer m_input{nullptr, 0, 0};
    std::string m_out;
    std::size_t m_pos = 0;
    std::string m_error;
};

struct FrameHeader {
    std::string digest;
    std::uint64_t size = 0;
    bool zstd = false;
    std::uint64_t length = 0;
};

common::Result<FrameHeader> parse_frame_header(std::string_view line) {
    auto bad = [&] {
        return make_error(ErrorKind::bad_request,
                          fmt::format("malformed blob frame header \"{}\" (expected \"DIGEST SIZE "
                                      "raw|zstd LENGTH\")",
                                      common::escape_path(line.substr(0, 120))));
    };
    std::vector<std::string_view> fields;
    while (!line.empty()) {
        const auto space = line.find(' ');
        fields.push_back(line.substr(0, space));
        line.remove_prefix(space == std::string_view::npos ? line.size() : space + 1);
    }
    if (fields.size() != 4 || !common::is_sha256_hex(fields[0]) ||
        (fields[2] != "raw" && fields[2] != "zstd"))
        return bad();
    FrameHeader h;
    h.digest = std::string(fields[0]);
    h.zstd = fields[2] == "zstd";
    for (auto [text, value] : {std::pair{fields[1], &h.size}, std::pair{fields[3], &h.length}}) {
        if (text.empty() || text.size() > 19 ||
            text.find_first_not_of("0123456789") != std::string_view::npos)
            return bad();
        *value = std::stoull(std::string(text));
    }
    if (h.size > k_max_frame_blob)
        return make_error(ErrorKind::bad_request,
                          fmt::format("blob {} of {} bytes is larger than a frame may carry ({} "
                                      "bytes): upload it with PUT /v1/blobs/{}",
                                      h.digest, h.size, k_max_frame_blob, h.digest));
    if ((!h.zstd && h.length != h.size) || (h.zstd && h.length > ZSTD_compressBound(h.size)))
        return make_error(ErrorKind::bad_request,
                          fmt::format("blob frame {} carries {} bytes for a content of {} bytes",
                                      h.digest, h.length, h.size));
    return h;
}

Response put_many(ApiContext& context, const Request& request) {
    const bool zstd = request.content_encoding == "zstd";
    if (!zstd && !request.content_encoding.empty() && request.content_encoding != "identity")
        return error_response(415, "unsupported_encoding",
                              "Content-Encoding " + request.content_encoding.substr(0, 40) +
                                  " is not supported (zstd or none)");
    if (!request.body_source)
        return error_response(make_error(ErrorKind::internal, "the upload's body is not readable"));
    FrameReader reader(*request.body_source, zstd);
    if (!reader.open())
        return error_response(make_error(ErrorKind::internal, "cannot decompress the body"));
    std::vector<BlobStore::Written> written;
    auto discard = [&](common::Error error) {
        for (const auto& w : written) {
            std::error_code ec;
            std::filesystem::remove(w.temp_file, ec);
        }
        if (error.kind == ErrorKind::io || error.kind == ErrorKind::disk_full)
            error.message = "cannot store the uploaded blobs: " + error.message;
        return error_response(error);
    };
    std::string line, payload, content;
    std::uint64_t blobs = 0, bytes = 0, present = 0;
    auto body_error = [&] { return discard(make_error(ErrorKind::bad_request, reader.error())); };
    while (!reader.at_end()) {
        const bool whole_line = reader.header(line);
        if (!reader.error().empty())
            return body_error();
        if (!whole_line)
            return discard(make_error(ErrorKind::bad_request,
                                      fmt::format("blob frame {}: the header line is cut short "
                                                  "or longer than 200 bytes",
                                                  blobs + present + 1)));
        auto frame = parse_frame_header(line);
        if (!frame)
            return discard(frame.error());
        const bool whole_payload = reader.payload(payload, frame->length);
        if (!reader.error().empty())
            return body_error();
        if (!whole_payload)
            return discard(make_error(ErrorKind::bad_request,
                                      fmt::format("blob frame {} is cut short: the body ended "
                                                  "before its {} bytes",
                                                  frame->digest, frame->length)));
        const std::string* data = &payload;
        if (frame->zstd) {
            content.resize(frame->size);
            const auto n =
                ZSTD_decompress(content.data(), content.size(), payload.data(), payload.size());
            if (ZSTD_isError(n) || n != frame->size)
                return discard(make_error(
                    ErrorKind::bad_request,
                    fmt::format("blob frame {} does not decompress to its {} bytes{}",
                                frame->digest, frame->size,
                                ZSTD_isError(n) ? std::string(": ") + ZSTD_getErrorName(n) : "")));
            data = &content;
        }
        const auto actual = common::sha256_hex(*data);
        if (actual != frame->digest)
            return discard(make_error(
                ErrorKind::bad_request,
                fmt::format("blob frame {}: the content hashes to {}", frame->digest, actual)));
        context.blobs.pin({frame->digest}); // a deployment will name it
        if (context.blobs.has(frame->digest)) {
            ++present;
            continue;
        }
        // The room is checked per blob as it comes: compressed, a body is no measure.
        if (auto room = context.disk.check(data->size(), "this upload"); !room)
            return discard(room.error());
        auto temp = context.blobs.write_temp(frame->digest, *data);
        if (!temp)
            return discard(temp.error());
        written.push_back(std::move(*temp));
        ++blobs;
        bytes += data->size();
    }
    if (!reader.error().empty()) // the end of a compressed body that does not decompress
        return body_error();
    if (auto stored = context.blobs.adopt_verified(written); !stored) {
        auto error = stored.error();
        error.message = "cannot store the uploaded blobs: " + error.message;
        return error_response(error);
    }
    return json_response(201, {{"stored", blobs}, {"bytes", bytes}, {"present", present}});
}

// --- POST /v1/trees/missing: which parts of a tree the agent lacks -----------------------

// Whether the agent has the whole tree below a stored node; pins all of it (a deploy is
// about to name it). A `root` is kept read, and known whole until a collection removes
// a blob: asked again, it is answered without reading the tree or looking at each blob.
//
// A folder of a tree found whole before (the unchanged folders of the next deploy's tree) is
// answered without reading it while no blob was removed since: the whole tree it is part of
// is pinned instead (once per request, in `pinned`; more than the folder needs, and pins
// expire).
bool have_tree(ApiContext& context, const std::string& digest, bool root,
               std::set<const TreeContents*>& pinned) {
    auto& pending = *context.pending_nodes;
    if (!root)
        if (auto whole = pending.whole_within(digest)) {
            if (pinned.insert(whole->tree.get()).second) {
                context.blobs.pin(whole->tree->nodes);
                context.blobs.pin(whole->tree->blobs);
            }
            if (context.blobs.removals() == whole->removals)
                return true;
        }
    if (!context.blobs.has(digest))
        return false;
    auto tree = read_tree(pending, context.blobs, digest, root);
    if (!tree)
        return false;
    const auto& contents = **tree;
    // Pinned first, then the store's removal count read: a blob removed before the pins
    // changed the count, none can go after them.
    context.blobs.pin(contents.nodes);
    context.blobs.pin(contents.blobs);
    const auto removals = context.blobs.removals();
    if (pending.whole_at(digest) == removals)
        return true; // every node and blob was there, and nothing was removed since
    if (!context.blobs.has_all(contents.nodes) || !context.blobs.has_all(contents.blobs))
        return false;
    if (root)
        pending.mark_whole(digest, removals);
    return true;
}

Response trees_missing(ApiContext& context, const Request& request) {
    auto body = parse_json_body(request, false);
    if (!body)
        return error_response(body.error());
    if (!body->is_object())
        return error_response(make_error(ErrorKind::bad_request, "expected a JSON object"));
    std::vector<std::string> missing_nodes, missing_blobs;
    // Views into the body and into `held`, alive until the answer is made.
    std::unordered_set<std::string_view> seen;
    std::set<const TreeContents*> pinned; // whole trees pinned by have_tree()
    std::vector<std::shared_ptr<const common::TreeNode>> held;
    std::vector<const common::TreeEntry*> files; // each content once
    std::vector<std::string> file_digests;
    if (auto roots = body->find("roots"); roots != body->end()) {
        if (!roots->is_array())
            return error_response(
                make_error(ErrorKind::bad_request, R"("roots" must be an array of node digests)"));
        for (const auto& root : *roots) {
            if (!root.is_string() || !common::is_sha256_hex(root.get_ref<const std::string&>()))
                return error_response(
                    make_error(ErrorKind::bad_request,
                               fmt::format("not a sha256 digest: {}", describe_value(root))));
            const auto& digest = root.get_ref<const std::string&>();
            if (seen.insert(digest).second && !have_tree(context, digest, true, pinned))
                missing_nodes.push_back(digest);
        }
    }
    if (auto nodes = body->find("nodes"); nodes != body->end()) {
        if (!nodes->is_array())
            return error_response(
                make_error(ErrorKind::bad_request, R"("nodes" must be an array of tree nodes)"));
        for (const auto& item : *nodes)
            if (!item.is_string())
                return error_response(
                    make_error(ErrorKind::bad_request, "a tree node is sent as a JSON string"));
        // Parsed by a few threads (a first deploy's last level: 600 nodes, 18,000 entries),
        // then taken in order.
        std::vector<common::Result<common::TreeNode>> parsed(
            nodes->size(), make_error(ErrorKind::internal, "not parsed"));
        std::vector<common::ManifestFault> faults(nodes->size(), common::ManifestFault::malformed);
        (void)common::parallel_for(nodes->size(), common::worker_count(nodes->size(), 64, 4),
                                   [&](std::size_t, std::size_t i) -> common::Status {
                                       parsed[i] = common::parse_node(
                                           (*nodes)[i].get_ref<const std::string&>(), &faults[i]);
                                       return {};
                                   });
        for (std::size_t i = 0; i < parsed.size(); ++i) {
            auto& node = parsed[i];
            if (!node) {
                if (faults[i] == common::ManifestFault::unstorable_path)
                    return error_response(400, "bad_path", node.error().message);
                return error_response(node.error());
            }
            held.push_back(std::make_shared<const common::TreeNode>(std::move(*node)));
            context.pending_nodes->add(held.back());
            for (const auto& entry : held.back()->entries) {
                if (entry.kind == common::TreeEntry::Kind::symlink ||
                    !seen.insert(entry.digest).second)
                    continue;
                if (entry.kind == common::TreeEntry::Kind::tree) {
                    if (!have_tree(context, entry.digest, false, pinned))
                        missing_nodes.push_back(entry.digest);
                    continue;
                }
                files.push_back(&entry);
                file_digests.push_back(entry.digest);
            }
        }
    }
    // The files pinned at once (one lock), then looked for together.
    context.blobs.pin(file_digests);
    const auto stored = context.blobs.stored_sizes({file_digests.begin(), file_digests.end()});
    std::uint64_t upload = 0;
    for (std::size_t i = 0; i < files.size(); ++i)
        if (!stored[i]) {
            missing_blobs.push_back(files[i]->digest);
            // The client's sizes only estimate the upload for the early disk check
            // (each blob is checked again as it is written); they must not wrap.
            const auto size = files[i]->size;
            upload = size > UINT64_MAX - upload ? UINT64_MAX : upload + size;
        }
    if (upload > 0 || !missing_blobs.empty())
        if (auto room = context.disk.check(upload, "this upload", missing_blobs.size()); !room)
            return error_response(room.error());
    // Written as it is (digests need no escaping): 18,000 of them made a JSON document only
    // to be dumped again.
    Response answer;
    answer.body = R"({"missing_nodes":[)";
    auto add = [&](const std::vector<std::string>& digests) {
        for (std::size_t i = 0; i < digests.size(); ++i)
            answer.body.append(i ? ",\"" : "\"").append(digests[i]).append("\"");
    };
    add(missing_nodes);
    answer.body += R"(],"missing_blobs":[)";
    add(missing_blobs);
    answer.body += "]}";
    return answer;
}

} // namespace

void add_blob_routes(Router& router, ApiContext& context) {
    router.add(
        "POST", "/v1/blobs", [&context](const Request& r) { return put_many(context, r); },
        BodyKind::stream);
    router.add("POST", "/v1/trees/missing",
               [&context](const Request& r) { return trees_missing(context, r); });
    router.add("POST", "/v1/blobs/missing",
               [&context](const Request& r) { return missing(context, r); });
    router.add(
        "PUT", "/v1/blobs/{digest}", [&context](const Request& r) { return put(context, r); },
        BodyKind::file);
}

} // namespace agent::api
