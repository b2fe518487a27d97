#pragma once
// The agent's on-disk layout (docs/design.md §4), in one place.

#include <filesystem>
#include <string>

namespace agent {

class DataDir {
  public:
    explicit DataDir(std::filesystem::path root) : m_root(std::move(root)) {}

    const std::filesystem::path& root() const { return m_root; }
    std::filesystem::path state_db() const { return m_root / "state.db"; }
    std::filesystem::path blobs() const { return m_root / "blobs"; }
    std::filesystem::path keys() const { return m_root / "keys"; }
    // The admin token made on first start (0600), for the local operator.
    std::filesystem::path admin_token() const { return m_root / "admin.token"; }
    // This agent's id (hex), labels its images and containers.
    std::filesystem::path agent_id() const { return m_root / "agent.id"; }
    std::filesystem::path app_dir(const std::string& app) const { return m_root / "apps" / app; }
    // The release's source tree; builds and the app run here.
    std::filesystem::path release_dir(const std::string& app, const std::string& id) const {
        return app_dir(app) / "releases" / id;
    }
    // The app's build cache (docs/build-cache.md): what builds keep between them, and
    // the outputs of successful builds, reused by a build of the same inputs.
    std::filesystem::path build_cache(const std::string& app) const {
        return app_dir(app) / "build-cache";
    }
    // NDJSON events of one deployment (state, build log, health).
    std::filesystem::path event_log(const std::string& app, const std::string& id) const {
        return app_dir(app) / "logs" / (id + ".ndjson");
    }
    // Raw stdout+stderr of the running app (the app writes it directly, so it
    // keeps logging while the agent is down).
    std::filesystem::path app_log(const std::string& app, const std::string& id) const {
        return app_dir(app) / "logs" / (id + ".app.log");
    }
    // Output of one process other than web ([processes]), all its instances.
    std::filesystem::path process_log(const std::string& app, const std::string& id,
                                      const std::string& process) const {
        return app_dir(app) / "logs" / (id + "." + process + ".log");
    }
    // The app's access log, written by deploy-proxy (rotated to access.ndjson.1).
    std::filesystem::path access_log(const std::string& app) const {
        return app_dir(app) / "logs" / "access.ndjson";
    }
    // The output of a [[cron]] job's runs, each after a header line (docs/cron.md).
    std::filesystem::path cron_log(const std::string& app, const std::string& job) const {
        return app_dir(app) / "logs" / ("cron." + job + ".log");
    }
    // The digests of the blobs the release was made of, one per line: what
    // `deployctl destroy` must not delete while another app's release uses it.
    std::filesystem::path release_blobs(const std::string& app, const std::string& id) const {
        return app_dir(app) / "manifests" / (id + ".blobs");
    }
    // The fingerprint of the app's variables when the release's web process started, and,
    // while it is in standby ([deploy] standby), until when: an agent that restarts keeps
    // it in standby for the rest of its window, warm only if the variables are the same.
    std::filesystem::path release_env_at_start(const std::string& app,
                                               const std::string& id) const {
        return app_dir(app) / "manifests" / (id + ".env");
    }
    std::filesystem::path release_standby(const std::string& app, const std::string& id) const {
        return app_dir(app) / "manifests" / (id + ".standby");
    }
    // The running agent's pid and process start time ("PID START"), for
    // `deploy-agent down`.
    std::filesystem::path agent_pid() const { return m_root / "agent.pid"; }
    // A bare repository per app that `git push` to the agent receives into (docs/git.md),
    // and the hooks git receive-pack runs there (pre-receive: the deploy).
    std::filesystem::path git_repo(const std::string& app) const {
        return m_root / "git" / (app + ".git");
    }
    std::filesystem::path git_hooks() const { return m_root / "git" / "hooks"; }
    std::filesystem::path proxy_dir() const { return m_root / "proxy"; }
    std::filesystem::path proxy_routes() const { return proxy_dir() / "routes.json"; }
    std::filesystem::path proxy_applied() const { return proxy_dir() / "applied"; }
    std::filesystem::path proxy_pid() const { return proxy_dir() / "proxy.pid"; }
    std::filesystem::path proxy_log() const { return proxy_dir() / "proxy.log"; }
    // The secret the agent's probes carry so deploy-proxy tells it which
    // release answered (docs/design.md §8); 0600, made on first start.
    std::filesystem::path proxy_probe_key() const { return proxy_dir() / "probe.key"; }

  private:
    std::filesystem::path m_root;
};

} // namespace agent
