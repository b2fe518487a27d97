#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/json.hpp>
#include <common/config.hpp>
#include <common/log.hpp>
#include <common/timestamp.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <initializer_list>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;

// Service::status() of the {app} in the path, with the not-found message
// docs/api.md users see.
common::Result<AppStatus> app_status(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return app.error();
    auto status = context.service.status(*app);
    if (!status && status.error().kind == ErrorKind::not_found)
        return make_error(ErrorKind::not_found,
                          fmt::format("no app named '{}' on this agent", *app));
    return status;
}

Response list_apps(ApiContext& context) {
    nlohmann::json apps = nlohmann::json::array();
    for (const auto& status : context.service.apps())
        apps.push_back(app_summary_to_json(status));
    return json_response(200, apps);
}

Response show_app(ApiContext& context, const Request& request) {
    auto status = app_status(context, request);
    if (!status)
        return error_response(status.error());
    auto body = status_to_json(*status);
    // [acme]: each domain's certificate, so that `status` warns about one that is missing.
    if (context.service.acme_enabled()) {
        nlohmann::json certificates = nlohmann::json::array();
        const auto all = context.service.certificates();
        for (const auto& domain : status->domains)
            for (const auto& c : all)
                if (c.name == domain) {
                    auto full = certificate_to_json(c);
                    certificates.push_back({{"name", full["name"]},
                                            {"state", full["state"]},
                                            {"not_after", full["not_after"]},
                                            {"last_error", full["last_error"]}});
                }
        body["certificates"] = std::move(certificates);
    }
    return json_response(200, body);
}

nlohmann::json process_list_json(const ProcessList& list) {
    nlohmann::json processes = nlohmann::json::array();
    for (const auto& p : list.processes) {
        nlohmann::json entry{{"process", p.process},
                             {"instance", p.instance},
                             {"state", p.state},
                             {"pid", p.pid},
                             {"restarts", p.restarts},
                             {"rss_bytes", p.rss_bytes},
                             {"cpu_percent", p.cpu_percent}};
        entry["container"] = p.container.empty() ? nlohmann::json() : nlohmann::json(p.container);
        entry["started_at"] =
            p.started_at.empty() ? nlohmann::json() : nlohmann::json(p.started_at);
        entry["uptime_s"] = p.started_at.empty() ? nlohmann::json() : nlohmann::json(p.uptime_s);
        entry["last_exit"] = p.last_exit.empty() ? nlohmann::json() : nlohmann::json(p.last_exit);
        processes.push_back(std::move(entry));
    }
    nlohmann::json scale = nlohmann::json::object();
    for (const auto& [name, count] : list.scale)
        scale[name] = count;
    return {{"app", list.app},         {"release", list.release}, {"engine", list.engine},
            {"stopped", list.stopped}, {"scale", scale},          {"processes", processes}};
}

// GET /v1/apps/{app}/ps: each process and instance of the PRODUCTION release.
Response list_processes(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto list = context.service.processes(*app);
    if (!list)
        return error_response(list.error());
    return json_response(200, process_list_json(*list));
}

// POST /v1/apps/{app}/scale {"web": 2, "worker": 1}: instance counts, then what ps lists.
Response scale(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto body = parse_json_body(request, false);
    if (!body)
        return error_response(body.error());
    if (!body->is_object() || body->empty())
        return error_response(make_error(ErrorKind::bad_request,
                                         R"(expected {"PROCESS": COUNT, ...}, e.g. {"web": 2})"));
    std::map<std::string, int> counts;
    for (const auto& [name, count] : body->items()) {
        if (!count.is_number_integer() || count.get<std::int64_t>() < 0 ||
            count.get<std::int64_t>() > k_max_instances)
            return error_response(make_error(
                ErrorKind::bad_request, fmt::format("\"{}\" must be a count from 0 to {}, not {}",
                                                    name, k_max_instances, describe_value(count))));
        counts[name] = static_cast<int>(count.get<std::int64_t>());
    }
    auto list = context.service.scale(*app, counts);
    if (!list)
        return error_response(list.error());
    return json_response(200, process_list_json(*list));
}

nlohmann::json traffic_json(const std::string& app, const Traffic& traffic) {
    nlohmann::json out{{"app", app}, {"maintenance", nullptr}, {"paused", nullptr}};
    if (traffic.maintenance)
        out["maintenance"] = {{"message", traffic.message},
                              {"retry_after", traffic.retry_after},
                              {"since", traffic.maintenance_since}};
    if (traffic.paused)
        out["paused"] = {{"timeout_ms", traffic.pause_timeout_ms}, {"since", traffic.paused_since}};
    return out;
}

Response traffic_response(const std::string& app, const common::Result<Traffic>& traffic) {
    if (!traffic)
        return error_response(traffic.error());
    return json_response(200, traffic_json(app, *traffic));
}

// GET /v1/apps/{app}/traffic: maintenance mode and pause.
Response show_traffic(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    return traffic_response(*app, context.service.traffic(*app));
}

// An optional whole-number field of a JSON object, from 0 to `max`.
common::Result<std::int64_t> count_field(const nlohmann::json& body, const char* key,
                                         std::int64_t fallback, std::int64_t min,
                                         std::int64_t max) {
    auto it = body.find(key);
    if (it == body.end())
        return fallback;
    if (!it->is_number_integer() || it->get<std::int64_t>() < min || it->get<std::int64_t>() > max)
        return make_error(ErrorKind::bad_request,
                          fmt::format("\"{}\" must be a whole number from {} to {}, not {}", key,
                                      min, max, describe_value(*it)));
    return it->get<std::int64_t>();
}

// Object bodies with only these keys.
common::Status check_keys(const nlohmann::json& body, std::initializer_list<std::string_view> keys,
                          std::string_view example) {
    if (!body.is_object())
        return make_error(ErrorKind::bad_request, fmt::format("expected {}", example));
    for (const auto& [key, value] : body.items())
        if (std::find(keys.begin(), keys.end(), key) == keys.end())
            return make_error(ErrorKind::bad_request,
                              fmt::format("unknown field \"{}\"; expected {}", key, example));
    return {};
}

// POST /v1/apps/{app}/maintenance {"message": "...", "retry_after": 300}: on.
Response maintenance_on(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto body = parse_json_body(request, true);
    if (!body)
        return error_response(body.error());
    constexpr std::string_view example = R"({"message": "Back at 10:00", "retry_after": 300})";
    if (auto checked = check_keys(*body, {"message", "retry_after"}, example); !checked)
        return error_response(checked.error());
    std::string message;
    if (auto it = body->find("message"); it != body->end()) {
        if (!it->is_string() || it->get_ref<const std::string&>().size() > 4096)
            return error_response(make_error(ErrorKind::bad_request,
                                             "\"message\" must be a string of at most 4096 bytes"));
        message = it->get<std::string>();
    }
    auto retry_after = count_field(*body, "retry_after", 0, 0, 366LL * 24 * 3600);
    if (!retry_after)
        return error_response(retry_after.error());
    return traffic_response(*app,
                            context.service.set_maintenance(*app, true, message, *retry_after));
}

Response maintenance_off(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    return traffic_response(*app, context.service.set_maintenance(*app, false, "", 0));
}

// POST /v1/apps/{app}/pause {"timeout_ms": 30000}
Response pause_app(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto body = parse_json_body(request, true);
    if (!body)
        return error_response(body.error());
    if (auto checked = check_keys(*body, {"timeout_ms"}, R"({"timeout_ms": 30000})"); !checked)
        return error_response(checked.error());
    auto timeout =
        count_field(*body, "timeout_ms", k_default_pause_timeout_ms, 1, 24LL * 3600 * 1000);
    if (!timeout)
        return error_response(timeout.error());
    return traffic_response(*app, context.service.set_paused(*app, true, *timeout));
}

Response resume_app(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    return traffic_response(*app, context.service.set_paused(*app, false, 0));
}

Response list_releases(ApiContext& context, const Request& request) {
    auto status = app_status(context, request);
    if (!status)
        return error_response(status.error());
    nlohmann::json releases = nlohmann::json::array();
    for (const auto& release : status->releases)
        releases.push_back(release_to_json(release));
    return json_response(200, releases);
}

Response show_release(ApiContext& context, const Request& request) {
    auto ref = release_ref(request);
    if (!ref)
        return error_response(ref.error());
    auto release = context.service.release(ref->app, ref->id);
    if (!release)
        return error_response(release.error());
    return json_response(200, release_to_json(*release));
}

common::Result<std::optional<std::string>> rollback_target(const Request& request) {
    auto body = parse_json_body(request, true);
    if (!body)
        return body.error();
    if (!body->is_object())
        return make_error(ErrorKind::bad_request, R"(expected {} or {"release": "vN"})");
    if (!body->contains("release") || (*body)["release"].is_null())
        return std::optional<std::string>{};
    const auto& release = (*body)["release"];
    if (!release.is_string() || !is_release_id(release.get<std::string>()))
        return make_error(ErrorKind::bad_request,
                          fmt::format("\"release\" must be a release id like \"v2\", not {}",
                                      describe_value(release)));
    return std::optional<std::string>{release.get<std::string>()};
}

Response rollback(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto target = rollback_target(request);
    if (!target)
        return error_response(target.error());
    auto promoted = context.service.rollback(*app, *target);
    if (!promoted)
        return error_response(promoted.error());
    const auto& previous = promoted->previous;
    return json_response(200, {{"app", *app},
                               {"release", promoted->release.id},
                               {"state", std::string(common::to_string(promoted->release.state))},
                               {"previous", previous ? nlohmann::json(*previous) : nullptr},
                               {"release_command_skipped", !promoted->release_command.empty()}});
}

nlohmann::json action_json(const AppAction& action) {
    return {{"app", action.app},
            {"release", action.release},
            {"state", action.state},
            {"changed", action.changed},
            {"pid", action.pid > 0 ? nlohmann::json(action.pid) : nlohmann::json(nullptr)}};
}

using AppActionFn = common::Result<AppAction> (Service::*)(const std::string&);

Response app_action(ApiContext& context, const Request& request, AppActionFn fn) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    if (auto body = parse_json_body(request, true); !body)
        return error_response(body.error());
    auto done = (context.service.*fn)(*app);
    if (!done)
        return error_response(done.error());
    return json_response(200, action_json(*done));
}

Response stop_app(ApiContext& context, const Request& request) {
    return app_action(context, request, &Service::stop_app);
}
Response start_app(ApiContext& context, const Request& request) {
    return app_action(context, request, &Service::start_app);
}
Response restart_app(ApiContext& context, const Request& request) {
    return app_action(context, request, &Service::restart_app);
}

Response destroy_app(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    const auto previews = context.service.previews(*app); // forgotten with the app
    auto destroyed = context.service.destroy_app(*app);
    if (!destroyed)
        return error_response(destroyed.error());
    nlohmann::json answer = {{"destroyed", destroyed->app},
                             {"releases", destroyed->releases},
                             {"blobs_removed", destroyed->blobs_removed},
                             {"blobs_kept", destroyed->blobs_kept},
                             {"previews", nlohmann::json::array()}};
    // Its preview environments go with it (docs/git.md).
    for (const auto& preview : previews) {
        auto gone = context.service.destroy_app(preview.preview_app);
        if (gone || gone.error().kind == ErrorKind::not_found)
            answer["previews"].push_back(preview.preview_app);
        else
            common::log_error(fmt::format("{} is destroyed but its preview {} is not: {}", *app,
                                          preview.preview_app, gone.error().message));
    }
    return json_response(200, answer);
}

Response remove_release(ApiContext& context, const Request& request) {
    auto ref = release_ref(request);
    if (!ref)
        return error_response(ref.error());
    if (auto removed = context.service.remove(ref->app, ref->id); !removed)
        return error_response(removed.error());
    return json_response(200, {{"deleted", ref->id}});
}

} // namespace

// deployctl build-cache ls (docs/build-cache.md).
Response show_build_cache(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto info = context.service.build_cache(*app);
    if (!info)
        return error_response(info.error());
    nlohmann::json entries = nlohmann::json::array();
    std::uint64_t cached = 0, builds = 0;
    for (const auto& entry : info->entries) {
        nlohmann::json item = {{"name", entry.name},
                               {"kind", entry.kind},
                               {"bytes", entry.bytes},
                               {"last_used", common::format_micros(entry.last_used / 1000)}};
        // A kept build, and a copy of one made ahead for its reuse ("ready", with its release).
        const bool of_build = entry.kind == "build" || !entry.release.empty();
        if (of_build)
            item["release"] = entry.release;
        (of_build ? builds : cached) += entry.bytes;
        entries.push_back(std::move(item));
    }
    return json_response(200, {{"app", info->app},
                               {"max", info->max},
                               {"bytes", cached},
                               {"builds_bytes", builds},
                               {"entries", std::move(entries)}});
}

// deployctl build-cache clear: refused (409) while a build of the app uses it.
Response clear_build_cache(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto cleared = context.service.clear_build_cache(*app);
    if (!cleared)
        return error_response(cleared.error());
    return json_response(200, {{"app", *app}, {"removed_bytes", *cleared}});
}

// GET /v1/apps/{app}/cron: the [[cron]] jobs of the PRODUCTION release.
Response list_cron(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto jobs = context.service.cron_jobs(*app);
    if (!jobs)
        return error_response(jobs.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& job : *jobs) {
        nlohmann::json entry = {{"name", job.name},         {"schedule", job.schedule},
                                {"timezone", job.timezone}, {"command", job.command},
                                {"running", job.running},   {"next_run", nullptr},
                                {"inactive", nullptr},      {"last_run", nullptr}};
        if (!job.next_run.empty())
            entry["next_run"] = job.next_run;
        if (!job.inactive.empty())
            entry["inactive"] = job.inactive;
        if (!job.last_started.empty())
            entry["last_run"] = {
                {"started", job.last_started}, {"finished", job.last_finished},
                {"exit", job.last_exit},       {"duration_ms", job.last_duration_ms},
                {"outcome", job.last_outcome}, {"release", job.last_release}};
        out.push_back(std::move(entry));
    }
    return json_response(200, {{"app", *app}, {"jobs", out}});
}

// POST /v1/apps/{app}/cron/{name}/runs: runs a job now.
Response run_cron(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    const auto it = request.params.find("name");
    const std::string name = it == request.params.end() ? "" : it->second;
    if (!common::is_valid_app_name(name))
        return error_response(make_error(
            ErrorKind::not_found, fmt::format("no cron job '{}': names are lower-case letters, "
                                              "digits and dashes",
                                              name.substr(0, 80))));
    auto started = context.service.run_cron(*app, name);
    if (!started)
        return error_response(started.error());
    return json_response(202, {{"app", *app},
                               {"job", started->job},
                               {"release", started->release},
                               {"log", started->log}});
}

void add_app_routes(Router& router, ApiContext& context) {
    auto bind = [&context](Response (*handler)(ApiContext&, const Request&)) {
        return [&context, handler](const Request& request) { return handler(context, request); };
    };
    router.add("GET", "/v1/apps", [&context](const Request&) { return list_apps(context); });
    router.add("GET", "/v1/apps/{app}", bind(show_app));
    router.add("GET", "/v1/apps/{app}/releases", bind(list_releases));
    router.add("GET", "/v1/apps/{app}/ps", bind(list_processes));
    router.add("POST", "/v1/apps/{app}/scale", bind(scale), BodyKind::small_json);
    router.add("GET", "/v1/apps/{app}/cron", bind(list_cron));
    router.add("GET", "/v1/apps/{app}/build-cache", bind(show_build_cache));
    router.add("DELETE", "/v1/apps/{app}/build-cache", bind(clear_build_cache),
               BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/cron/{name}/runs", bind(run_cron), BodyKind::small_json);
    router.add("GET", "/v1/apps/{app}/releases/{id}", bind(show_release));
    router.add("DELETE", "/v1/apps/{app}/releases/{id}", bind(remove_release));
    router.add("POST", "/v1/apps/{app}/rollback", bind(rollback), BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/stop", bind(stop_app), BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/start", bind(start_app), BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/restart", bind(restart_app), BodyKind::small_json);
    router.add("GET", "/v1/apps/{app}/traffic", bind(show_traffic));
    router.add("POST", "/v1/apps/{app}/maintenance", bind(maintenance_on), BodyKind::small_json);
    router.add("DELETE", "/v1/apps/{app}/maintenance", bind(maintenance_off), BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/pause", bind(pause_app), BodyKind::small_json);
    router.add("POST", "/v1/apps/{app}/resume", bind(resume_app), BodyKind::small_json);
    // Everything of the app, its secrets and history too: the admin scope.
    router.add("DELETE", "/v1/apps/{app}", bind(destroy_app), BodyKind::small_json, Access::admin);
}

} // namespace agent::api
