#pragma once
// The API's endpoints (docs/api.md). Each handlers_*.cpp adds one group of
// routes; make_router() assembles them all.

#include <agent/api/router.hpp>
#include <agent/api/tree_nodes.hpp>
#include <agent/deploy/service.hpp>
#include <agent/git/repository.hpp>
#include <agent/paths.hpp>
#include <agent/store/blobs.hpp>

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace agent::auth {
class AuthStore;
}

namespace agent::api {

struct ApiContext {
    Service& service;
    BlobStore& blobs;
    DataDir data_dir;
    // How often a follower looks at its log files for new lines.
    std::chrono::milliseconds poll_interval{100};
    // When the API serves HTTPS: the fingerprint of its certificate now.
    std::function<std::string()> tls_fingerprint{};
    // Tokens and the audit log; without it the token and audit routes answer 503.
    auth::AuthStore* auth = nullptr;
    // --min-free: an upload that would not fit is refused up front (507).
    DiskGuard disk{};
    // Tree nodes sent for deploys in progress (POST /v1/trees/missing).
    std::shared_ptr<PendingNodes> pending_nodes = std::make_shared<PendingNodes>();
    // git push to the agent (handlers_git.cpp): the pushes in progress, and the unix socket
    // their hook calls back on (none: git push is not served).
    std::shared_ptr<git::Pushes> pushes = std::make_shared<git::Pushes>();
    std::filesystem::path socket{};
    // How long a webhook's fetch may take before the delivery is answered 504
    // (--git-fetch-timeout).
    std::chrono::milliseconds fetch_timeout{std::chrono::minutes(2)};
};

Router make_router(ApiContext& context);

// POST /v1/apps/{app}/deployments with this JSON body (docs/api.md): a push to the agent
// deploys through it too (handlers_git.cpp), the same checks and the same answers.
Response create_deployment(ApiContext& context, const std::string& app, const nlohmann::json& body);
// The deploy.toml of the app's PRODUCTION release (its [git] branch, url and token: a push's
// deploy branch, a webhook's fetch); ErrorKind::refused when the app serves none.
common::Result<common::AppConfig> serving_config(ApiContext& context, const std::string& app);
// A commit of the app's repository deployed through create_deployment: its files the blob
// store lacks stored first (handlers_git.cpp). For a push and a webhook.
Response deploy_commit(ApiContext& context, const std::string& app,
                       const git::PackagedCommit& packaged, const std::string& audit_detail);
// The events of a release (GET .../events): from the start, and with `follow` until it is
// settled, then a "done" event.
void stream_events(ApiContext& context, const std::string& app, const std::string& id, bool follow,
                   StreamSink& sink);

void add_system_routes(Router& router, ApiContext& context);     // health, info
void add_blob_routes(Router& router, ApiContext& context);       // blobs
void add_app_routes(Router& router, ApiContext& context);        // status, releases, rollback, rm
void add_deployment_routes(Router& router, ApiContext& context); // create a deployment
void add_stream_routes(Router& router, ApiContext& context);     // events, logs
void add_env_routes(Router& router, ApiContext& context);        // variables and secrets
void add_auth_routes(Router& router, ApiContext& context);       // tokens, audit
void add_run_routes(Router& router, ApiContext& context);        // deployctl run
void add_canary_routes(Router& router, ApiContext& context);     // deployctl canary
void add_git_routes(Router& router, ApiContext& context);        // git push to the agent
void add_hook_routes(Router& router, ApiContext& context);       // webhooks, deliveries
void add_preview_routes(Router& router, ApiContext& context);    // preview environments

} // namespace agent::api
