// Webhooks (docs/git.md): POST /v1/hooks/{provider}/{app} from GitHub, GitLab or Gitea,
// authenticated by the app's webhook secret (no bearer token): GitHub's and Gitea's
// HMAC-SHA256 of the raw body, GitLab's token, each compared in constant time. A push event
// on the deploy branch makes the agent fetch the pushed commit from [git] url and deploy it
// through the same handler as POST .../deployments; the answer (202) names the release at
// once and the deploy runs on. Every delivery is recorded (deployctl hooks ls) once: one
// seen before is acknowledged and not deployed again.
//
// POST /v1/apps/{app}/hooks/secret (deployctl hooks secret) and GET
// /v1/apps/{app}/hooks/deliveries (deployctl hooks ls).
#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/hooks.hpp>
#include <agent/git/fetch.hpp>
#include <agent/git/repository.hpp>
#include <common/ascii.hpp>
#include <common/config.hpp>
#include <common/duration.hpp>
#include <common/hash.hpp>
#include <common/log.hpp>
#include <common/ssh_key.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;
using nlohmann::json;

bool equal_in_constant_time(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &length);
    return common::to_hex({reinterpret_cast<const char*>(digest), length});
}

std::string header(const Request& request, const std::string& name) {
    auto it = request.headers.find(name);
    return it == request.headers.end() ? std::string() : it->second;
}

// What each provider sends: its signature, its event and its delivery id.
struct Provider {
    const char* name;
    const char* signature_header; // what a missing signature names
};
constexpr Provider k_providers[] = {
    {"github", "X-Hub-Signature-256"},
    {"gitlab", "X-Gitlab-Token"},
    {"gitea", "X-Gitea-Signature"},
};

const Provider* provider_named(const std::string& name) {
    for (const auto& provider : k_providers)
        if (name == provider.name)
            return &provider;
    return nullptr;
}

// Empty when the delivery is signed with `secret`, else why not.
std::string signature_problem(const Provider& provider, const Request& request,
                              const std::string& secret) {
    const std::string name = provider.name;
    if (name == "gitlab") {
        const auto token = header(request, "x-gitlab-token");
        if (token.empty())
            return "missing X-Gitlab-Token";
        return equal_in_constant_time(token, secret) ? "" : "X-Gitlab-Token does not match";
    }
    std::string given;
    std::string header_name;
    if (name == "gitea" && !header(request, "x-gitea-signature").empty()) {
        given = common::ascii_lower(header(request, "x-gitea-signature"));
        header_name = "X-Gitea-Signature";
    } else {
        given = header(request, "x-hub-signature-256");
        header_name = "X-Hub-Signature-256";
        if (!given.empty() && common::ascii_lower(given.substr(0, 7)) != "sha256=")
            return "X-Hub-Signature-256 is not \"sha256=HEX\"";
        if (!given.empty())
            given = common::ascii_lower(given.substr(7));
    }
    if (given.empty())
        return fmt::format("missing {}", provider.signature_header);
    return equal_in_constant_time(given, hmac_sha256_hex(secret, request.body))
               ? ""
               : header_name + " does not match the body signed with the app's webhook secret";
}

// The event, in the words GitHub uses: push, pull_request, ping, ...
std::string event_of(const Provider& provider, const Request& request) {
    const std::string name = provider.name;
    if (name == "github")
        return header(request, "x-github-event");
    if (name == "gitea")
        return header(request, "x-gitea-event");
    const auto event = header(request, "x-gitlab-event");
    if (event == "Push Hook")
        return "push";
    if (event == "Merge Request Hook")
        return "pull_request";
    if (event == "Tag Push Hook")
        return "tag_push";
    return common::ascii_lower(event);
}

// The provider's id of the delivery; without one, the body's digest (a replay of the same
// body is the same delivery).
std::string delivery_of(const Provider& provider, const Request& request) {
    const std::string name = provider.name;
    std::string id = header(request, name == "github"  ? "x-github-delivery"
                                     : name == "gitea" ? "x-gitea-delivery"
                                                       : "x-gitlab-event-uuid");
    if (id.empty() && name == "gitlab")
        id = header(request, "idempotency-key");
    const bool usable =
        !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](unsigned char c) {
            return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
        });
    if (!usable)
        id = "sha256:" + common::sha256_hex(request.body);
    return id;
}

// "SHA256:..." of a key line ("ssh-ed25519 AAAA..."), as ssh-keygen -l prints it.
std::string fingerprint_of(const std::string& key_line) {
    auto key = common::parse_public_key(key_line);
    return key ? common::fingerprint_sha256(key->blob) : "?";
}

// A server's host key, trusted on first use as ssh's StrictHostKeyChecking=accept-new
// trusts it: a host's first key is kept, another one later is refused.
common::Status check_host_key(Service& service, const std::string& app, const std::string& host,
                              const std::string& key) {
    for (const auto& known : service.git_hosts(app))
        if (known.host == host) {
            if (known.key == key)
                return {};
            return make_error(ErrorKind::refused,
                              fmt::format("the host key of {} changed: it was {} (trusted since "
                                          "{}), it is now {}. If the server's key was changed on "
                                          "purpose, deployctl hooks key --forget-hosts trusts "
                                          "the next one",
                                          host, fingerprint_of(known.key), known.added_at,
                                          fingerprint_of(key)));
        }
    TRY(service.add_git_host(app, host, key));
    common::log_info(fmt::format("{}: trusting the host key {} of {} (its first fetch)", app,
                                 fingerprint_of(key), host));
    return {};
}

json delivery_json(const DeliveryRow& row, ApiContext& context) {
    json out = {{"provider", row.provider}, {"delivery", row.delivery}, {"time", row.received_at},
                {"event", row.event},       {"ref", row.ref},           {"commit", row.commit},
                {"release", row.release},   {"result", row.result},     {"detail", row.detail},
                {"release_state", nullptr}};
    if (!row.release.empty())
        if (auto release = context.service.release(row.app, row.release))
            out["release_state"] = std::string(common::to_string(release->state));
    return out;
}

// A push event: the pushed commit of the deploy branch fetched and deployed.
HookOutcome push_delivery(ApiContext& context, const std::string& app, const std::string& provider,
                          const json& body, DeliveryRow& row) {
    if (!body.is_object() || !body.value("ref", json()).is_string() ||
        !body.value("after", json()).is_string())
        return {400, "refused", "a push event must have \"ref\" and \"after\""};
    row.ref = body["ref"].get<std::string>();
    row.commit = body["after"].get<std::string>();
    if (row.commit.size() != 40 ||
        row.commit.find_first_not_of("0123456789abcdef") != std::string::npos)
        return {400, "refused", "\"after\" is not a commit id"};
    auto config = serving_config(context, app);
    if (!config)
        return {409, "refused", config.error().message};
    const std::string branch_ref = "refs/heads/" + config->git.branch;
    if (row.ref != branch_ref)
        return {200,
                "ignored",
                fmt::format("{} is not the deploy branch ({})", row.ref, config->git.branch),
                {{"deployed", false}}};
    if (row.commit == git::k_zero_oid)
        return {200, "ignored", "the branch was deleted", {{"deployed", false}}};
    if (auto failed = fetch_for_hook(context, app, *config, branch_ref, branch_ref))
        return *failed;
    const auto repo = context.data_dir.git_repo(app);
    if (!git::has_commit(repo, row.commit))
        return {409, "failed",
                fmt::format("commit {} is not on branch {} of {}", row.commit, config->git.branch,
                            config->git.url)};
    auto packaged = git::package_commit(repo, {}, row.commit);
    if (!packaged)
        return {500, "failed", packaged.error().message};
    const auto audit = fmt::format("webhook {} {}: {} {}", provider, row.delivery,
                                   config->git.branch, row.commit.substr(0, 12));
    return deploy_for_hook(context, app, **packaged, audit, row);
}

Response receive_hook(ApiContext& context, const Request& request) {
    const auto* provider = provider_named(request.params.at("provider"));
    if (!provider)
        return error_response(404, "not_found",
                              fmt::format("no webhook for \"{}\": the agent takes github, gitlab "
                                          "and gitea deliveries",
                                          request.params.at("provider")));
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto secret = context.service.existing_hook_secret(*app);
    if (!secret)
        return error_response(secret.error());
    if (!*secret)
        return error_response(401, "unauthorized",
                              fmt::format("{} has no webhook secret (deployctl hooks secret makes "
                                          "one)",
                                          *app));
    if (auto problem = signature_problem(*provider, request, **secret); !problem.empty()) {
        auto refused = error_response(401, "unauthorized", "bad webhook signature: " + problem);
        refused.audit_detail = fmt::format("webhook {}: {}", provider->name, problem);
        return refused;
    }
    DeliveryRow row;
    row.app = *app;
    row.provider = provider->name;
    row.delivery = delivery_of(*provider, request);
    row.event = event_of(*provider, request);
    if (row.event.empty() || row.event.size() > 64)
        row.event = "unknown";
    row.result = "received";
    auto fresh = context.service.begin_delivery(row);
    if (!fresh)
        return error_response(fresh.error());
    const auto audit = fmt::format("webhook {} {} {}", provider->name, row.event, row.delivery);
    if (!*fresh) {
        const auto seen = context.service.delivery(*app, provider->name, row.delivery);
        json answer = {{"delivery", row.delivery}, {"duplicate", true}};
        if (seen) {
            answer["release"] = seen->release;
            answer["result"] = seen->result;
        }
        auto response = json_response(200, answer);
        response.audit_detail = audit + " (seen before: not deployed again)";
        return response;
    }
    // From here every answer is recorded on the delivery's row.
    const auto settle = [&](int status, const std::string& result, const std::string& detail,
                            json answer) {
        row.result = result;
        row.detail = detail;
        if (auto ok = context.service.finish_delivery(row); !ok)
            common::log_error("cannot record webhook delivery: " + ok.error().message);
        answer["delivery"] = row.delivery;
        answer["result"] = result;
        if (!detail.empty())
            answer["detail"] = detail;
        Response response =
            status >= 400 ? error_response(status, result, detail) : json_response(status, answer);
        response.audit_detail = audit;
        return response;
    };
    if (row.event == "ping")
        return settle(200, "ok", "", {{"pong", true}});
    if (row.event != "push" && row.event != "pull_request")
        return settle(200, "ignored", fmt::format("{} events are not deployed", row.event),
                      {{"deployed", false}});
    const auto body = json::parse(request.body, nullptr, false);
    auto outcome = row.event == "push"
                       ? push_delivery(context, *app, provider->name, body, row)
                       : pull_request_delivery(context, *app, provider->name, body, row);
    auto response = settle(outcome.status, outcome.result, outcome.detail, outcome.answer);
    if (!outcome.audit.empty())
        response.audit_detail = outcome.audit;
    return response;
}

Response make_secret(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto body = parse_json_body(request, true);
    if (!body)
        return error_response(body.error());
    auto rotate = bool_member(*body, "rotate");
    if (!rotate)
        return error_response(rotate.error());
    auto secret = context.service.hook_secret(*app, *rotate);
    if (!secret)
        return error_response(secret.error());
    json paths = json::object();
    for (const auto& provider : k_providers)
        paths[provider.name] = fmt::format("/v1/hooks/{}/{}", provider.name, *app);
    auto response = json_response(
        200, {{"app", *app}, {"secret", *secret}, {"rotated", *rotate}, {"paths", paths}});
    response.audit_detail = *rotate ? "webhook secret rotated" : "webhook secret read";
    return response;
}

Response make_key(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto body = parse_json_body(request, true);
    if (!body)
        return error_response(body.error());
    auto rotate = bool_member(*body, "rotate");
    auto forget = bool_member(*body, "forget_hosts");
    if (!rotate || !forget)
        return error_response(!rotate ? rotate.error() : forget.error());
    if (*forget)
        if (auto forgotten = context.service.forget_git_hosts(*app); !forgotten)
            return error_response(forgotten.error());
    auto key = context.service.git_key(*app, true, *rotate);
    if (!key)
        return error_response(key.error());
    if (!*key)
        return error_response(500, "internal", "the deploy key was not made");
    json hosts = json::array();
    for (const auto& host : context.service.git_hosts(*app))
        hosts.push_back({{"host", host.host},
                         {"key_type", host.key.substr(0, host.key.find(' '))},
                         {"fingerprint", fingerprint_of(host.key)},
                         {"added", host.added_at}});
    auto response = json_response(200, {{"app", *app},
                                        {"public_key", (*key)->public_key},
                                        {"fingerprint", fingerprint_of((*key)->public_key)},
                                        {"created", (*key)->created_at},
                                        {"rotated", *rotate},
                                        {"hosts_forgotten", *forget},
                                        {"hosts", hosts}});
    response.audit_detail = fmt::format("deploy key {}{}", *rotate ? "rotated" : "read",
                                        *forget ? ", host keys forgotten" : "");
    return response;
}

Response list_deliveries(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    json rows = json::array();
    for (const auto& row : context.service.deliveries(*app))
        rows.push_back(delivery_json(row, context));
    return json_response(200, {{"app", *app}, {"deliveries", rows}});
}

} // namespace

std::optional<HookOutcome> fetch_for_hook(ApiContext& context, const std::string& app,
                                          const common::AppConfig& config,
                                          const std::string& source,
                                          const std::string& destination) {
    if (config.git.url.empty())
        return HookOutcome{409, "refused",
                           "the serving release's deploy.toml has no [git] url to fetch the "
                           "commit from"};
    git::FetchAuth auth;
    if (common::is_ssh_git_url(config.git.url)) {
        auto key = context.service.git_private_key(app);
        if (!key)
            return HookOutcome{500, "failed", key.error().message};
        if (!*key)
            return HookOutcome{409, "refused",
                               fmt::format("[git] url is an ssh URL and {} has no deploy key: "
                                           "make it with deployctl hooks key and add it to the "
                                           "repository's deploy keys",
                                           app)};
        auth.ssh_key_pem = std::move(**key);
        auth.key_dir = context.data_dir.root();
        auth.check_host = [&service = context.service, app](const std::string& host,
                                                            const std::string& key_line) {
            return check_host_key(service, app, host, key_line);
        };
    }
    if (!config.git.token.empty()) {
        auto value = context.service.secret_value(app, config.git.token);
        if (!value)
            return HookOutcome{500, "failed", value.error().message};
        if (!*value)
            return HookOutcome{409, "refused",
                               fmt::format("[git] token names {}, which is not a secret of {} "
                                           "(deployctl env set --secret {}=...)",
                                           config.git.token, app, config.git.token)};
        auth.token = **value;
    }
    if (auto fetched = git::fetch_within(app, context.data_dir.git_repo(app), config.git.url,
                                         source, destination, auth, context.fetch_timeout);
        !fetched)
        return HookOutcome{fetched.error().kind == ErrorKind::refused   ? 503
                           : fetched.error().kind == ErrorKind::timeout ? 504
                                                                        : 502,
                           "failed", fetched.error().message};
    return std::nullopt;
}

HookOutcome deploy_for_hook(ApiContext& context, const std::string& deploy_as,
                            const git::PackagedCommit& packaged, const std::string& audit,
                            DeliveryRow& row) {
    auto created = deploy_commit(context, deploy_as, packaged, audit);
    const auto answer = json::parse(created.body, nullptr, false);
    if (created.status == 201 || (created.status == 200 && answer.value("unchanged", false))) {
        row.release = answer.value("release", "");
        const bool unchanged = created.status == 200;
        return {unchanged ? 200 : 202,
                unchanged ? "unchanged" : "deploying",
                "",
                {{"app", deploy_as},
                 {"release", row.release},
                 {"commit", row.commit},
                 {"unchanged", unchanged}},
                audit};
    }
    const std::string why = answer.is_object() && answer.contains("error")
                                ? answer["error"].value("message", created.body)
                                : created.body;
    return {created.status, "failed", why, json::object(), audit};
}

void add_hook_routes(Router& router, ApiContext& context) {
    router.add(
        "POST", "/v1/hooks/{provider}/{app}",
        [&context](const Request& request) { return receive_hook(context, request); },
        BodyKind::hook, Access::open);
    router.add(
        "POST", "/v1/apps/{app}/hooks/secret",
        [&context](const Request& request) { return make_secret(context, request); },
        BodyKind::small_json);
    router.add(
        "POST", "/v1/apps/{app}/hooks/key",
        [&context](const Request& request) { return make_key(context, request); },
        BodyKind::small_json);
    router.add("GET", "/v1/apps/{app}/hooks/deliveries",
               [&context](const Request& request) { return list_deliveries(context, request); });
}

} // namespace agent::api
