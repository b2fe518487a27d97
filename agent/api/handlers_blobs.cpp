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

Response missing(ApiContext& context, const Request& request) {
    auto body = parse_json_body(request, false);
    if (!body)
        return error_response(body.error());
    auto digests = digest_list(*body);
    if (!digests)
        return error_response(digests.error());
    std::set<std::string> seen;
    std::vector<std::string> lacking;
    for (const auto& digest : *digests)
        if (seen.insert(digest).second && !context.blobs.has(digest))
            lacking.push_back(digest);
    return json_response(200, {{"missing", lacking}});
}

Response put(ApiContext& context, const Request& request) {
    const auto& digest = request.params.at("digest");
    if (auto stored = context.blobs.adopt(digest, request.body_file); !stored) {
        auto error = stored.error();
        if (error.kind == ErrorKind::io) // which step failed, and why, for deployctl's message
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
