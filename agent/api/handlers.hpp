#pragma once
// The API's endpoints (docs/api.md). Each handlers_*.cpp adds one group of
// routes; make_router() assembles them all.

#include <agent/api/router.hpp>
#include <agent/api/tree_nodes.hpp>
#include <agent/deploy/service.hpp>
#include <agent/paths.hpp>
#include <agent/store/blobs.hpp>

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
};

Router make_router(ApiContext& context);

void add_system_routes(Router& router, ApiContext& context);     // health, info
void add_blob_routes(Router& router, ApiContext& context);       // blobs
void add_app_routes(Router& router, ApiContext& context);        // status, releases, rollback, rm
void add_deployment_routes(Router& router, ApiContext& context); // create a deployment
void add_stream_routes(Router& router, ApiContext& context);     // events, logs
void add_env_routes(Router& router, ApiContext& context);        // variables and secrets
void add_auth_routes(Router& router, ApiContext& context);       // tokens, audit
void add_run_routes(Router& router, ApiContext& context);        // deployctl run
void add_canary_routes(Router& router, ApiContext& context);     // deployctl canary

} // namespace agent::api
