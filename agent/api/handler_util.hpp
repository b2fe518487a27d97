#pragma once
// Small helpers shared by the handlers_*.cpp files.

#include <agent/api/http.hpp>
#include <common/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace agent::api {

// The body as JSON; an empty body reads as {} when `empty_is_object`.
// Malformed JSON, or JSON nested deeper than k_max_json_depth, is
// ErrorKind::bad_request with the reason.
inline constexpr int k_max_json_depth = 64;
common::Result<nlohmann::json> parse_json_body(const Request& request, bool empty_is_object);
// Member `name` of a JSON body, a flag: false when the body is not an object or leaves it out
// (or null), else its boolean; ErrorKind::bad_request "\"NAME\" must be true or false"
// for anything else.
common::Result<bool> bool_member(const nlohmann::json& body, const char* name);
// A short description of a request value for an error message: strings (cut
// to 80 bytes) as themselves, anything else by its type, never serialized.
std::string describe_value(const nlohmann::json& value);
// Request::params["app"], checked with common::is_valid_app_name.
common::Result<std::string> app_param(const Request& request);
// Request::params["id"], checked to look like a release id ("v12").
common::Result<std::string> release_param(const Request& request);
bool is_release_id(const std::string& id);

struct ReleaseRef {
    std::string app;
    std::string id;
};
// Both path parameters of /v1/apps/{app}/releases/{id}..., each checked.
common::Result<ReleaseRef> release_ref(const Request& request);

} // namespace agent::api
