#include <agent/api/errors.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace agent::api {

using common::ErrorKind;

int http_status(ErrorKind kind) {
    switch (kind) {
    case ErrorKind::usage:
    case ErrorKind::config:
    case ErrorKind::bad_request:
        return 400;
    case ErrorKind::auth:
        return 401;
    case ErrorKind::not_found:
        return 404;
    case ErrorKind::refused:
        return 409;
    case ErrorKind::connection:
        return 502;
    case ErrorKind::timeout:
        return 504;
    case ErrorKind::disk_full:
        return 507; // Insufficient Storage
    case ErrorKind::failed:
    case ErrorKind::io:
    case ErrorKind::internal:
        return 500;
    }
    return 500;
}

Response json_response(int status, const nlohmann::json& body) {
    Response response;
    response.status = status;
    // Replace invalid UTF-8 rather than throwing: messages may quote user bytes.
    response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return response;
}

Response error_response(int status, const std::string& code, const std::string& message) {
    return json_response(status, {{"error", {{"code", code}, {"message", message}}}});
}

Response error_response(const common::Error& error) {
    // A usage error (a command line's) is a bad request over the API: the codes an answer
    // may carry are docs/api.md's.
    const auto code = error.kind == ErrorKind::usage ? std::string("bad_request")
                                                     : common::error_code(error.kind);
    return error_response(http_status(error.kind), code, error.message);
}

Response missing_blobs_response(const std::vector<std::string>& missing) {
    const auto message = fmt::format("{} blob{} missing: upload them first", missing.size(),
                                     missing.size() == 1 ? " is" : "s are");
    return json_response(
        409, {{"error", {{"code", "missing_blobs"}, {"message", message}}}, {"missing", missing}});
}

} // namespace agent::api
