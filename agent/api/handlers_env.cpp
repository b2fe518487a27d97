// The app's variables (deployctl env): list, set, unset. Request bodies hold
// secret values: they are never logged, and errors never quote a value.
#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/json.hpp>
#include <agent/secrets/envelope.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;

constexpr const char* k_takes_effect = "when the app next starts (deployctl restart, deploy --force or rollback)";

Response list_env(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    nlohmann::json vars = nlohmann::json::array();
    for (const auto& var : context.service.env(*app)) {
        nlohmann::json item{
            {"name", var.name}, {"secret", var.secret}, {"updated_at", var.updated_at}};
        if (!var.secret)
            item["value"] = var.value;
        vars.push_back(std::move(item));
    }
    return json_response(200, {{"app", *app}, {"vars", std::move(vars)}});
}

// {"vars": [{"name": "K", "value": "V", "secret": false}, ...]}
common::Result<std::vector<secrets::NewVar>> parse_vars(const Request& request) {
    auto body = parse_json_body(request, false);
    if (!body)
        return body.error();
    const char* k_expected =
        R"(expected {"vars": [{"name": "KEY", "value": "...", "secret": true}]})";
    if (!body->is_object() || !body->contains("vars") || !(*body)["vars"].is_array() ||
        (*body)["vars"].empty())
        return make_error(ErrorKind::bad_request, k_expected);
    std::vector<secrets::NewVar> vars;
    for (auto& item : (*body)["vars"]) {
        if (!item.is_object() || !item.contains("name") || !item["name"].is_string() ||
            !item.contains("value") || !item["value"].is_string())
            return make_error(ErrorKind::bad_request, k_expected);
        bool secret = false;
        if (item.contains("secret")) {
            if (!item["secret"].is_boolean())
                return make_error(ErrorKind::bad_request, "\"secret\" must be true or false");
            secret = item["secret"].get<bool>();
        }
        secrets::NewVar var{item["name"].get<std::string>(), item["value"].get<std::string>(),
                            secret};
        secrets::wipe(item["value"].get_ref<std::string&>());
        vars.push_back(std::move(var));
    }
    return vars;
}

Response set_env(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto vars = parse_vars(request);
    if (!vars)
        return error_response(vars.error());
    nlohmann::json names = nlohmann::json::array();
    for (const auto& var : *vars)
        names.push_back(var.name);
    if (auto set = context.service.set_env(*app, std::move(*vars)); !set)
        return error_response(set.error());
    return json_response(200, {{"app", *app}, {"set", names}, {"takes_effect", k_takes_effect}});
}

Response unset_env(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    const std::string& name = request.params.at("name");
    if (auto unset = context.service.unset_env(*app, {name}); !unset)
        return error_response(unset.error());
    return json_response(200, {{"app", *app},
                               {"unset", nlohmann::json::array({name})},
                               {"takes_effect", k_takes_effect}});
}

} // namespace

void add_env_routes(Router& router, ApiContext& context) {
    auto bind = [&context](Response (*handler)(ApiContext&, const Request&)) {
        return [&context, handler](const Request& request) { return handler(context, request); };
    };
    router.add("GET", "/v1/apps/{app}/env", bind(list_env));
    router.add("POST", "/v1/apps/{app}/env", bind(set_env));
    router.add("PUT", "/v1/apps/{app}/env", bind(set_env));
    router.add("DELETE", "/v1/apps/{app}/env/{name}", bind(unset_env));
}

} // namespace agent::api
