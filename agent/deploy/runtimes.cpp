// Choosing the engine (--engine auto|docker|podman|process) and the runtime
// that builds and runs each release.
#include <agent/deploy/engine.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <random>

namespace agent {

using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::chrono::milliseconds k_detect_timeout{5000};

// The id stays with the data directory; images and containers carry it, so a
// restarted agent finds its own and two agents on one engine never mix theirs.
common::Result<std::string> load_agent_id(const std::filesystem::path& file) {
    if (auto text = common::read_file(file)) {
        auto id = *text;
        while (!id.empty() && (id.back() == '\n' || id.back() == ' '))
            id.pop_back();
        if (id.size() >= 8 && id.find_first_not_of("0123456789abcdef") == std::string::npos)
            return id;
        return make_error(ErrorKind::config, file.string() + " does not hold an agent id; "
                                                             "remove it to make a new one");
    }
    std::random_device random;
    std::string id;
    for (int i = 0; i < 4; ++i)
        id += fmt::format("{:08x}", random());
    if (auto written = common::atomic_write_file(file, id + "\n"); !written)
        return written.error();
    return id;
}

} // namespace

common::Status Engine::open_runtimes() {
    auto id = load_agent_id(m_options.data_dir.agent_id());
    if (!id)
        return id.error();
    m_agent_id = *id;
    runtime::cgroup::Options cgroups;
    cgroups.root = m_options.cgroup_root;
    cgroups.group = "deployctl-" + m_agent_id;
    m_cgroups = std::make_shared<runtime::cgroup::Cgroups>(runtime::cgroup::Cgroups::open(cgroups));
    if (auto note = m_cgroups->missing_note(); !note.empty())
        common::log_warn(note); // once, at start
    m_process_runtime = runtime::make_process_runtime(m_cgroups);
    std::string engine = m_options.engine;
    if (engine == "auto") {
        const std::string binary = m_options.engine_bin.empty() ? "docker" : m_options.engine_bin;
        engine = runtime::engine_answers(binary, k_detect_timeout) ? "docker" : "process";
        common::log_info("--engine auto: using " + engine +
                         (engine == "process" ? " (no Docker engine answers)" : ""));
    }
    if (engine == "docker" || engine == "podman") {
        runtime::ContainerOptions options;
        options.engine = engine;
        options.binary = m_options.engine_bin;
        options.network = m_options.container_network;
        options.agent_id = m_agent_id;
        options.secret_values = [this](const runtime::ReleaseRef& release) {
            auto values = m_env->secret_values(release.app, release.id);
            if (!values)
                common::log_error("cannot redact the output of " + release.app + " " + release.id +
                                  ": " + values.error().message);
            return values ? std::move(*values) : std::vector<std::string>();
        };
        options.log_settings = [this](const runtime::ReleaseRef& release) {
            auto row = m_store->get(release.app, release.id);
            auto config = row ? common::parse_config(row->config, "deploy.toml")
                              : common::Result<common::AppConfig>(row.error());
            if (!config) {
                common::log_warn("the app log of " + release.app + " " + release.id +
                                 " rotates with [logs]' defaults: " + config.error().message);
                return common::LogSettings{};
            }
            return config->logs;
        };
        auto container = runtime::make_container_runtime(std::move(options));
        if (!container)
            return container.error();
        m_container_runtime = std::move(*container);
        common::log_info("engine " + engine + " " + m_container_runtime->version());
    } else if (engine != "process") {
        return make_error(ErrorKind::usage, "unknown engine \"" + engine +
                                                "\" (expected auto, docker, podman or process)");
    }
    m_engine = engine;
    return {};
}

std::string Engine::engine_version() const {
    return m_container_runtime ? m_container_runtime->version() : std::string();
}

runtime::Runtime& Engine::runtime_for(const std::string& app, const std::string& id,
                                      const common::AppConfig& config) const {
    if (m_container_runtime &&
        runtime::wants_container(config, m_options.data_dir.release_dir(app, id)))
        return *m_container_runtime;
    return *m_process_runtime;
}

bool Engine::may_build_image(const common::AppConfig& config,
                             const common::Manifest& manifest) const {
    if (!m_container_runtime)
        return false;
    if (!config.build.dockerfile.empty())
        return true;
    return std::any_of(manifest.entries.begin(), manifest.entries.end(),
                       [](const auto& entry) { return entry.path == "Dockerfile"; });
}

std::string Engine::unsupported_limits(const common::AppConfig& config,
                                       const common::Manifest& manifest) const {
    if (config.static_site)
        return {}; // nothing runs
    if (may_build_image(config, manifest))
        return {}; // a container: the engine applies them
    std::string why = m_cgroups->unsupported(runtime::cgroup::run_limits(config), "run");
    auto build = m_cgroups->unsupported(runtime::cgroup::build_limits(config), "build");
    if (!build.empty())
        why += (why.empty() ? "" : ", ") + build;
    return why;
}

runtime::Runtime* Engine::running_runtime(const ReleaseRow& row) const {
    auto config = common::parse_config(row.config, "deploy.toml");
    if (!config)
        return m_process_runtime.get();
    if (!config->has_web())
        return nullptr; // [static] (deploy-proxy serves its files) or worker-only: no web runs
    return &runtime_for(row.app, row.id, *config);
}

runtime::Runtime& Engine::runtime_for(const ReleaseRow& row) const {
    auto config = common::parse_config(row.config, "deploy.toml");
    if (!config || config->static_site)
        return *m_process_runtime;
    return runtime_for(row.app, row.id, *config);
}

} // namespace agent
