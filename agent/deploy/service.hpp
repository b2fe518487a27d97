#pragma once
// The seam between the HTTP API (agent/api) and the deployment engine
// (agent/deploy, agent/store, agent/runtime). The API validates and parses
// requests, then calls a Service; it never touches the database or processes.

#include <agent/paths.hpp>
#include <agent/proxy/tls_certificates.hpp>
#include <agent/secrets/vars.hpp>
#include <common/config.hpp>
#include <common/manifest.hpp>
#include <common/result.hpp>
#include <common/state.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace agent {

struct ReleaseInfo {
    std::string id; // "v3"
    std::string app;
    common::State state = common::State::queued;
    std::string created_at; // RFC 3339 UTC
    std::string updated_at;
    std::string commit;
    std::string message;
    std::string error; // empty unless FAILED (or a note, e.g. a restart)
    int port = 0;      // the app's port on 127.0.0.1 while it runs
    bool dirty = false; // deployed from a working tree with uncommitted changes
    std::string tree_digest;   // of the source tree (common::Manifest::digest)
    std::string config_digest; // sha256 of the deploy.toml text
};

struct NewDeployment {
    std::string app;
    std::string config_text; // deploy.toml as sent, kept with the release
    common::AppConfig config;
    common::Manifest manifest; // already passed validate_manifest()
    std::string commit;
    std::string message;
    bool dirty = false;
    // Make a release even when PRODUCTION was made from the same tree and deploy.toml
    // (the API answers such a request with that release otherwise).
    bool force = false;
};

struct AppStatus {
    std::string app;
    std::optional<std::string> production; // release id
    std::string url;                       // http://APP.localhost:PROXYPORT/
    std::vector<std::string> domains;
    std::vector<ReleaseInfo> releases; // newest first
};

// What a rollback did: the release now PRODUCTION and the one it replaced.
struct Promotion {
    ReleaseInfo release;
    std::optional<std::string> previous;
};

// How deploy-proxy serves the apps.
struct ProxySettings {
    std::string listen = "127.0.0.1:8080"; // plain HTTP
    // HTTPS, on when `certificates` is not empty (the first is the default
    // for clients that ask for a name none covers).
    std::string https_listen = "127.0.0.1:8443";
    std::vector<proxy::CertificateFiles> certificates;
    bool redirect_https = false; // plain HTTP to a covered host: 308 to https
};

struct ServiceOptions {
    DataDir data_dir;
    std::string engine = "process"; // auto | docker | podman | process
    ProxySettings proxy;
    std::string proxy_bin;          // path of the deploy-proxy binary
    std::string engine_bin;                      // the docker/podman CLI; default: on PATH
    std::string container_network = "host";      // docker run --network
};

class Service {
  public:
    virtual ~Service() = default;

    // Recovers state after a restart (re-adopts running apps, fails interrupted
    // builds), makes sure deploy-proxy runs with the current routes, starts the
    // workers and the supervisor.
    virtual common::Status start() = 0;
    // Stops workers; running apps and the proxy keep running.
    virtual void stop() = 0;

    // Records a QUEUED release and schedules it; returns at once.
    // The API has validated the manifest and checked that every blob is present.
    virtual common::Result<ReleaseInfo> create_deployment(NewDeployment deployment) = 0;
    virtual common::Result<ReleaseInfo> release(const std::string& app, const std::string& id) = 0;
    virtual common::Result<AppStatus> status(const std::string& app) = 0;
    virtual std::vector<AppStatus> apps() = 0;
    // Promotes an INACTIVE release (default: newest INACTIVE older than PRODUCTION)
    // after starting it and passing its health check. Blocks until done.
    virtual common::Result<Promotion> rollback(const std::string& app,
                                               const std::optional<std::string>& id) = 0;
    // ErrorKind::refused for PRODUCTION or unsettled releases.
    virtual common::Status remove(const std::string& app, const std::string& id) = 0;

    // The app's variables (deployctl env): listed without secret values; set
    // all or nothing (ErrorKind::usage for a bad name or value); unset
    // (ErrorKind::not_found if one is not set). An app needs no release yet.
    virtual std::vector<secrets::VarInfo> env(const std::string& app) {
        (void)app;
        return {};
    }
    virtual common::Status set_env(const std::string& app, std::vector<secrets::NewVar> vars) {
        (void)app, (void)vars;
        return common::make_error(common::ErrorKind::internal, "variables are not supported");
    }
    virtual common::Status unset_env(const std::string& app,
                                     const std::vector<std::string>& names) {
        (void)app, (void)names;
        return common::make_error(common::ErrorKind::internal, "variables are not supported");
    }

    // The engine in use ("docker", "podman", "process"; "auto" is resolved by
    // start()) and, for container engines, its version.
    virtual std::string engine() const = 0;
    virtual std::string engine_version() const = 0;
    virtual std::string proxy_listen() const = 0;
    // Where deploy-proxy serves HTTPS; empty when it has no certificates.
    virtual std::string proxy_https_listen() const = 0;
};

std::unique_ptr<Service> make_service(ServiceOptions options);

} // namespace agent
