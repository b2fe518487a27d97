#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <common/hash.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <set>
#include <system_error>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;

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
    if (upload > 0)
        if (auto room = context.disk.check(upload, "this upload"); !room)
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

} // namespace

void add_blob_routes(Router& router, ApiContext& context) {
    router.add("POST", "/v1/blobs/missing",
               [&context](const Request& r) { return missing(context, r); });
    router.add(
        "PUT", "/v1/blobs/{digest}", [&context](const Request& r) { return put(context, r); },
        BodyKind::file);
}

} // namespace agent::api
