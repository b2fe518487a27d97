#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/json.hpp>
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

// GET /v1/disk: deployctl agent df.
Response disk(ApiContext& context) {
    auto usage = context.service.disk_usage();
    if (!usage)
        return error_response(usage.error());
    nlohmann::json apps = nlohmann::json::array();
    for (const auto& app : usage->apps)
        apps.push_back({{"app", app.app},
                        {"releases", app.releases},
                        {"blobs", app.blobs},
                        {"logs", app.logs},
                        {"images", app.images},
                        {"build_cache", app.build_cache}});
    return json_response(
        200,
        {{"data_dir", usage->data_dir},
         {"free", usage->filesystem.free},
         {"size", usage->filesystem.size},
         {"reserve", usage->reserve},
         {"files", usage->filesystem.files},
         {"free_files", usage->filesystem.free_files},
         {"file_reserve", usage->file_reserve},
         {"total", usage->total},
         {"blobs",
          {{"bytes", usage->blobs}, {"count", usage->blob_count}, {"unused", usage->unused_blobs}}},
         {"images", {{"bytes", usage->images}, {"unused", usage->unused_images}}},
         {"apps", std::move(apps)}});
}

// POST /v1/prune {"dry_run": bool}: deployctl agent prune.
Response prune(ApiContext& context, const Request& request) {
    auto body = parse_json_body(request, true);
    if (!body)
        return error_response(body.error());
    bool dry_run = false;
    if (auto it = body->find("dry_run"); it != body->end()) {
        if (!it->is_boolean())
            return error_response(common::make_error(common::ErrorKind::bad_request,
                                                     R"("dry_run" must be true or false)"));
        dry_run = it->get<bool>();
    }
    auto collected = context.service.collect_garbage(dry_run);
    if (!collected)
        return error_response(collected.error());
    nlohmann::json blobs = nlohmann::json::array();
    for (const auto& blob : collected->blobs)
        blobs.push_back({{"digest", blob.digest}, {"bytes", blob.bytes}});
    nlohmann::json logs = nlohmann::json::array();
    for (const auto& log : collected->logs)
        logs.push_back({{"app", log.app}, {"file", log.file}, {"bytes", log.bytes}});
    nlohmann::json images = nlohmann::json::array();
    for (const auto& image : collected->images)
        images.push_back({{"id", image.id},
                          {"app", image.app},
                          {"release", image.release.empty() ? nlohmann::json(nullptr)
                                                            : nlohmann::json(image.release)},
                          {"bytes", image.bytes}});
    return json_response(200, {{"dry_run", dry_run},
                               {"blobs", std::move(blobs)},
                               {"bytes", collected->bytes},
                               {"logs", std::move(logs)},
                               {"images", std::move(images)}});
}

// GET /v1/certificates: deployctl certs ([acme], docs/tls.md).
Response certificates(ApiContext& context) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& c : context.service.certificates())
        names.push_back(certificate_to_json(c));
    return json_response(
        200, {{"acme", context.service.acme_enabled()}, {"certificates", std::move(names)}});
}

} // namespace

void add_system_routes(Router& router, ApiContext& context) {
    router.add(
        "GET", "/v1/health", [](const Request&) { return health(); }, BodyKind::json, Access::open);
    router.add("GET", "/v1/info", [&context](const Request&) { return info(context); });
    router.add("GET", "/v1/disk", [&context](const Request&) { return disk(context); });
    router.add("GET", "/v1/certificates",
               [&context](const Request&) { return certificates(context); });
    router.add(
        "POST", "/v1/prune", [&context](const Request& r) { return prune(context, r); },
        BodyKind::small_json, Access::admin);
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
    add_git_routes(router, context);
    add_hook_routes(router, context);
    add_preview_routes(router, context);
    add_stream_routes(router, context);
    add_auth_routes(router, context);
    return router;
}

} // namespace agent::api
