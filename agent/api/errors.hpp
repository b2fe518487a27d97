#pragma once
// Error answers: {"error":{"code","message"}} with the status docs/api.md gives.

#include <agent/api/http.hpp>
#include <common/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace agent::api {

// HTTP status for an error kind (config/bad_request 400, not_found 404, refused 409, ...).
int http_status(common::ErrorKind kind);
// The answer for a Result error: status from its kind, code from common::error_code().
Response error_response(const common::Error& error);
// An error answer with an explicit status and code ("too_large", "method_not_allowed").
Response error_response(int status, const std::string& code, const std::string& message);
// 409 missing_blobs with the "missing" array.
Response missing_blobs_response(const std::vector<std::string>& missing);
// A JSON answer.
Response json_response(int status, const nlohmann::json& body);

} // namespace agent::api
