// The agent API's handling of a request before any handler acts on it:
// "METHOD TARGET\nBODY" -> the router (agent::api::Router with the API's own
// patterns), path parameters (app_param, release_param, blob digests),
// parse_query, parse_json_body, then what the handlers read from the body
// (manifest, deploy.toml text, digest lists), and an app's output line turned
// into an NDJSON log event.
// Properties:
// - parse_json_body never throws: malformed bodies are bad_request (4xx), and
//   an accepted body is nested at most k_max_json_depth levels;
// - an accepted app name is [a-z0-9-] and a release id is v<N>, so neither can
//   name another directory; a digest that passes is_sha256_hex maps to a path
//   directly under the blob store;
// - every JSON line the agent writes (to_line) is one line and valid JSON,
//   whatever bytes the app printed;
// - a bearer token (the body, as an Authorization header would carry it) is
//   accepted only in its exact format: parse_token then format_token gives
//   back the same text, with a 12-hex id.

#include <agent/api/handler_util.hpp>
#include <agent/api/json.hpp>
#include <agent/api/router.hpp>
#include <agent/auth/token.hpp>
#include <agent/logs/stamp.hpp>
#include <agent/store/blobs.hpp>
#include <common/config.hpp>
#include <common/hash.hpp>
#include <common/manifest.hpp>
#include <common/timestamp.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "check.hpp"

namespace {

using namespace agent::api;

// The method and pattern of every route agent/api/*.cpp add (router.add).
const Router& router() {
    static const Router r = [] {
        Router router;
        for (auto [method, pattern] : {
                 std::pair{"DELETE", "/v1/apps/{app}"},
                 {"DELETE", "/v1/apps/{app}/build-cache"},
                 {"DELETE", "/v1/apps/{app}/env/{name}"},
                 {"DELETE", "/v1/apps/{app}/maintenance"},
                 {"DELETE", "/v1/apps/{app}/releases/{id}"},
                 {"DELETE", "/v1/tokens/{id}"},
                 {"GET", "/metrics"},
                 {"GET", "/v1/apps"},
                 {"GET", "/v1/apps/{app}"},
                 {"GET", "/v1/apps/{app}/build-cache"},
                 {"GET", "/v1/apps/{app}/canary"},
                 {"GET", "/v1/apps/{app}/cron"},
                 {"GET", "/v1/apps/{app}/env"},
                 {"GET", "/v1/apps/{app}/hooks/deliveries"},
                 {"GET", "/v1/apps/{app}/logs"},
                 {"GET", "/v1/apps/{app}/previews"},
                 {"GET", "/v1/apps/{app}/ps"},
                 {"GET", "/v1/apps/{app}/releases"},
                 {"GET", "/v1/apps/{app}/releases/{id}"},
                 {"GET", "/v1/apps/{app}/releases/{id}/events"},
                 {"GET", "/v1/apps/{app}/traffic"},
                 {"GET", "/v1/audit"},
                 {"GET", "/v1/certificates"},
                 {"GET", "/v1/disk"},
                 {"GET", "/v1/health"},
                 {"GET", "/v1/info"},
                 {"GET", "/v1/tokens"},
                 {"POST", "/v1/apps/{app}/canary"},
                 {"POST", "/v1/apps/{app}/canary/abort"},
                 {"POST", "/v1/apps/{app}/canary/promote"},
                 {"POST", "/v1/apps/{app}/cron/{name}/runs"},
                 {"POST", "/v1/apps/{app}/deployments"},
                 {"POST", "/v1/apps/{app}/env"},
                 {"POST", "/v1/apps/{app}/git/pre-receive"},
                 {"POST", "/v1/apps/{app}/git/receive"},
                 {"POST", "/v1/apps/{app}/hooks/key"},
                 {"POST", "/v1/apps/{app}/hooks/secret"},
                 {"POST", "/v1/apps/{app}/maintenance"},
                 {"POST", "/v1/apps/{app}/pause"},
                 {"POST", "/v1/apps/{app}/restart"},
                 {"POST", "/v1/apps/{app}/resume"},
                 {"POST", "/v1/apps/{app}/rollback"},
                 {"POST", "/v1/apps/{app}/runs"},
                 {"POST", "/v1/apps/{app}/scale"},
                 {"POST", "/v1/apps/{app}/start"},
                 {"POST", "/v1/apps/{app}/stop"},
                 {"POST", "/v1/blobs"},
                 {"POST", "/v1/blobs/missing"},
                 {"POST", "/v1/hooks/{provider}/{app}"},
                 {"POST", "/v1/prune"},
                 {"POST", "/v1/tokens"},
                 {"POST", "/v1/trees/missing"},
                 {"PUT", "/v1/apps/{app}/canary"},
                 {"PUT", "/v1/apps/{app}/env"},
                 {"PUT", "/v1/blobs/{digest}"},
             })
            router.add(method, pattern, [](const Request&) { return Response{}; });
        return router;
    }();
    return r;
}

void check_line(const nlohmann::json& value) {
    const std::string line = to_line(value);
    FUZZ_CHECK(line.find('\n') == std::string::npos);
    auto again = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(!again.is_discarded());
}

void check_params(const Request& request) {
    if (request.params.count("app")) {
        if (auto app = app_param(request))
            FUZZ_CHECK(app->find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") ==
                           std::string::npos &&
                       !app->empty() && app->size() <= 63);
    }
    if (request.params.count("id")) {
        if (auto id = release_param(request))
            FUZZ_CHECK(id->size() >= 2 && (*id)[0] == 'v' && (*id)[1] != '0' &&
                       id->find_first_not_of("0123456789", 1) == std::string::npos);
    }
    if (auto it = request.params.find("digest"); it != request.params.end()) {
        if (common::is_sha256_hex(it->second)) {
            const std::filesystem::path root = "/srv/agent/blobs";
            const auto path = agent::BlobStore(root).path(it->second);
            FUZZ_CHECK(path.parent_path().parent_path() == root);
            FUZZ_CHECK(path.filename() == it->second);
        }
    }
}

int depth(const nlohmann::json& value) {
    int deepest = 0;
    if (value.is_structured())
        for (const auto& item : value)
            deepest = std::max(deepest, depth(item));
    return deepest + (value.is_structured() ? 1 : 0);
}

// What handlers_deployments.cpp and handlers_blobs.cpp read from a JSON body.
void read_body(const nlohmann::json& body) {
    FUZZ_CHECK(depth(body) <= k_max_json_depth); // what dump() and the handlers recurse on
    check_line(body);
    if (!body.is_object())
        return;
    if (auto config = body.find("config"); config != body.end() && config->is_string())
        (void)common::parse_config(config->get_ref<const std::string&>(), "deploy.toml");
    if (auto manifest = body.find("manifest"); manifest != body.end() && manifest->is_object()) {
        if (auto parsed = common::manifest_from_json(*manifest))
            (void)common::validate_manifest(*parsed);
    }
    if (auto digests = body.find("digests"); digests != body.end() && digests->is_array()) {
        for (const auto& item : *digests)
            if (!item.is_string() || !common::is_sha256_hex(item.get_ref<const std::string&>()))
                (void)describe_value(item);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto newline = input.find('\n');
    const auto start_line = input.substr(0, newline);
    Request request;
    request.body = newline == std::string_view::npos ? "" : input.substr(newline + 1);
    const auto space = start_line.find(' ');
    request.method = start_line.substr(0, space);
    const auto target = space == std::string_view::npos ? "" : start_line.substr(space + 1);
    const auto question = target.find('?');
    request.path = target.substr(0, question);
    if (question != std::string_view::npos)
        request.query = parse_query(target.substr(question + 1));

    auto match = router().match(request.method, request.path);
    if (match.result == MatchResult::found) {
        request.params = std::move(match.params);
        check_params(request);
    }

    for (bool empty_is_object : {false, true}) {
        try {
            if (auto body = parse_json_body(request, empty_is_object))
                read_body(*body);
            else
                FUZZ_CHECK(body.error().kind == common::ErrorKind::bad_request);
        } catch (const std::exception& error) {
            std::fprintf(stderr, "parse_json_body threw: %s\n", error.what());
            FUZZ_CHECK(!"parse_json_body or a body reader threw");
        }
    }
    // The body as a line of an app's log (agent/logs/stamp.hpp): its stamp and text, and
    // the event the logs routes send for it, one NDJSON line whatever its bytes.
    const auto [stamp, text] = agent::logs::split_stamp(request.body);
    FUZZ_CHECK(stamp.size() + text.size() + (stamp.empty() ? 0 : 1) == request.body.size());
    (void)agent::logs::stamp_time(stamp);
    (void)common::parse_time_bound(request.body, 0);
    check_line({{"event", "log"},
                {"ts", stamp},
                {"release", "v1"},
                {"process", "web"},
                {"stream", "app"},
                {"line", text}});
    if (auto token = agent::auth::parse_token(request.body)) {
        FUZZ_CHECK(agent::auth::format_token(*token) == request.body);
        FUZZ_CHECK(token->id.size() == agent::auth::k_id_hex);
    }
    return 0;
}
