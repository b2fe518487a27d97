#include <agent/api/errors.hpp>
#include <agent/api/handlers.hpp>
#include <common/version.hpp>

#include <nlohmann/json.hpp>

namespace agent::api {

namespace {

Response health() {
    return json_response(200, {{"status", "ok"}, {"version", common::version()}});
}

Response info(ApiContext& context) {
    nlohmann::json apps = nlohmann::json::array();
    for (const auto& status : context.service.apps())
        apps.push_back(status.app);
    nlohmann::json body = {{"version", common::version()},
                           {"engine", context.service.engine()},
                           {"engine_version", context.service.engine_version()},
                           {"data_dir", context.data_dir.root().string()},
                           {"proxy_listen", context.service.proxy_listen()},
                           {"proxy_https_listen", context.service.proxy_https_listen()},
                           {"apps", std::move(apps)}};
    if (context.tls_fingerprint)
        body["tls_fingerprint"] = context.tls_fingerprint();
    return json_response(200, body);
}

} // namespace

void add_system_routes(Router& router, ApiContext& context) {
    router.add(
        "GET", "/v1/health", [](const Request&) { return health(); }, BodyKind::json,
        Access::open);
    router.add("GET", "/v1/info", [&context](const Request&) { return info(context); });
}

Router make_router(ApiContext& context) {
    Router router;
    add_system_routes(router, context);
    add_blob_routes(router, context);
    add_deployment_routes(router, context);
    add_app_routes(router, context);
    add_canary_routes(router, context);
    add_env_routes(router, context);
    add_run_routes(router, context);
    add_stream_routes(router, context);
    add_auth_routes(router, context);
    return router;
}

} // namespace agent::api
