// Canary releases (docs/api.md "Canary releases"): GET and PUT
// /v1/apps/{app}/canary, POST /v1/apps/{app}/canary/promote and /abort.
#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/json.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;

nlohmann::json side_json(const CanarySide& side) {
    return {{"release", side.release},
            {"requests", side.requests},
            {"errors", side.errors},
            {"error_rate", side.requests ? 100.0 * static_cast<double>(side.errors) /
                                               static_cast<double>(side.requests)
                                         : 0.0},
            {"p95_ms", side.requests ? nlohmann::json(side.p95_ms) : nlohmann::json(nullptr)}};
}

nlohmann::json canary_json(const CanaryInfo& info) {
    return {{"app", info.app},
            {"release", info.release},
            {"production", info.production.empty() ? nlohmann::json(nullptr)
                                                   : nlohmann::json(info.production)},
            {"percent", info.percent},
            {"auto_at", info.auto_at ? nlohmann::json(info.auto_at) : nlohmann::json(nullptr)},
            {"max_error_rate", info.max_error_bp / 100.0},
            {"sides", {{"canary", side_json(info.canary_side)},
                       {"production", side_json(info.production_side)}}}};
}

Response show_canary(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto info = context.service.canary(*app);
    if (!info)
        return error_response(info.error());
    return json_response(200, canary_json(*info));
}

Response set_canary(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto body = parse_json_body(request, false);
    if (!body)
        return error_response(body.error());
    if (!body->is_object() || !body->contains("percent") ||
        !(*body)["percent"].is_number_integer() || (*body)["percent"].get<std::int64_t>() < 0 ||
        (*body)["percent"].get<std::int64_t>() > 100)
        return error_response(make_error(ErrorKind::bad_request,
                                         R"(expected {"percent": N}, N from 0 to 100)"));
    auto info = context.service.set_canary(*app, (*body)["percent"].get<int>());
    if (!info)
        return error_response(info.error());
    return json_response(200, canary_json(*info));
}

Response promote_canary(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto promoted = context.service.promote_canary(*app);
    if (!promoted)
        return error_response(promoted.error());
    const auto& previous = promoted->previous;
    return json_response(200, {{"app", *app},
                               {"release", promoted->release.id},
                               {"state", std::string(common::to_string(promoted->release.state))},
                               {"previous", previous ? nlohmann::json(*previous) : nullptr}});
}

Response abort_canary(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto aborted = context.service.abort_canary(*app);
    if (!aborted)
        return error_response(aborted.error());
    return json_response(200, {{"app", *app},
                               {"release", aborted->id},
                               {"state", std::string(common::to_string(aborted->state))},
                               {"error", aborted->error}});
}

} // namespace

void add_canary_routes(Router& router, ApiContext& context) {
    auto bind = [&context](Response (*handler)(ApiContext&, const Request&)) {
        return [&context, handler](const Request& request) { return handler(context, request); };
    };
    router.add("GET", "/v1/apps/{app}/canary", bind(show_canary));
    router.add("PUT", "/v1/apps/{app}/canary", bind(set_canary), BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/canary", bind(set_canary), BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/canary/promote", bind(promote_canary),
               BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/canary/abort", bind(abort_canary), BodyKind::small_json);
}

} // namespace agent::api
