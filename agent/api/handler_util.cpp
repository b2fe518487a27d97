#include <agent/api/handler_util.hpp>
#include <common/config.hpp>
#include <common/storable_path.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string_view>

namespace agent::api {

using common::ErrorKind;
using common::make_error;

namespace {

// The deepest nesting of arrays and objects in `text`, counted without
// parsing (nlohmann's parser and serializer recurse once per level).
int json_depth(std::string_view text) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return deepest;
}

} // namespace

std::string describe_value(const nlohmann::json& value) {
    if (value.is_string())
        return "\"" + value.get_ref<const std::string&>().substr(0, 80) + "\"";
    return std::string("a JSON ") + value.type_name();
}

common::Result<bool> bool_member(const nlohmann::json& body, const char* name) {
    if (!body.is_object())
        return false;
    auto it = body.find(name);
    if (it == body.end() || it->is_null())
        return false;
    if (!it->is_boolean())
        return common::make_error(common::ErrorKind::bad_request,
                                  fmt::format("\"{}\" must be true or false", name));
    return it->get<bool>();
}

common::Result<nlohmann::json> parse_json_body(const Request& request, bool empty_is_object) {
    if (request.body.find_first_not_of(" \t\r\n") == std::string::npos && empty_is_object)
        return nlohmann::json::object();
    if (json_depth(request.body) > k_max_json_depth)
        return make_error(ErrorKind::bad_request,
                          fmt::format("JSON body nested deeper than {} levels", k_max_json_depth));
    try {
        return nlohmann::json::parse(request.body);
    } catch (const nlohmann::json::exception& error) {
        // The parser's own message quotes the bytes it stopped at, which are not text.
        if (auto offset = common::invalid_utf8_offset(request.body))
            return make_error(ErrorKind::bad_request,
                              fmt::format("malformed JSON body: bytes that are not valid UTF-8 at "
                                          "byte {} (a JSON text, and every path in a "
                                          "manifest, must be UTF-8)",
                                          *offset));
        // parse_error, and out_of_range for a number too large for a double ("1e999").
        return make_error(ErrorKind::bad_request,
                          fmt::format("malformed JSON body: {}", error.what()));
    }
}

common::Result<std::string> app_param(const Request& request) {
    const auto it = request.params.find("app");
    const std::string app = it == request.params.end() ? "" : it->second;
    if (!common::is_valid_app_name(app))
        return make_error(ErrorKind::bad_request,
                          fmt::format("invalid app name '{}': use lower-case letters, digits and "
                                      "dashes, starting with a letter (at most 63)",
                                      app.substr(0, 80)));
    return app;
}

bool is_release_id(const std::string& id) {
    if (id.size() < 2 || id.size() > 12 || id[0] != 'v' || id[1] == '0')
        return false;
    for (std::size_t i = 1; i < id.size(); ++i)
        if (id[i] < '0' || id[i] > '9')
            return false;
    return true;
}

common::Result<std::string> release_param(const Request& request) {
    const auto it = request.params.find("id");
    const std::string id = it == request.params.end() ? "" : it->second;
    if (!is_release_id(id))
        return make_error(
            ErrorKind::not_found,
            fmt::format("no release '{}': release ids look like v1, v2, ...", id.substr(0, 80)));
    return id;
}

common::Result<ReleaseRef> release_ref(const Request& request) {
    auto app = app_param(request);
    if (!app)
        return app.error();
    auto id = release_param(request);
    if (!id)
        return id.error();
    return ReleaseRef{*app, *id};
}

} // namespace agent::api
