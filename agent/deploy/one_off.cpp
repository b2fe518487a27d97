// deployctl run: a command in a release's environment (docs/run.md). The API
// streams it (agent/api/handlers_run.cpp); this prepares it.
#include <agent/deploy/engine.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

namespace agent {

using common::ErrorKind;
using common::make_error;
using common::State;

common::Result<OneOff> Engine::one_off(const OneOffRequest& request) {
    const auto& app = request.app;
    TRY(known_app(app));
    ReleaseRow row;
    if (request.release.empty()) {
        auto production = m_store->production(app);
        if (!production)
            return make_error(ErrorKind::not_found,
                              app + " has no PRODUCTION release to run a command in; deploy it "
                                    "first, or name a release with --release");
        row = std::move(*production);
    } else {
        auto found = m_store->get(app, request.release);
        if (!found)
            return make_error(ErrorKind::not_found,
                              fmt::format("{} has no release {} (deployctl releases lists them)",
                                          app, request.release));
        row = std::move(*found);
        if (row.state != State::production && row.state != State::inactive)
            return make_error(ErrorKind::bad_request,
                              fmt::format("release {} of {} is {}: only a PRODUCTION or INACTIVE "
                                          "release can run a command",
                                          row.id, app, common::to_string(row.state)));
    }
    auto config = common::parse_config(row.config, "deploy.toml");
    if (!config)
        return config.error();
    const auto dir = m_options.data_dir.release_dir(app, row.id);
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        return make_error(
            ErrorKind::bad_request,
            fmt::format("release {} of {} has no files on this agent any more", row.id, app));

    auto runs = m_runs;
    {
        std::lock_guard lock(runs->mutex);
        if (m_options.max_runs_per_app <= 0)
            return make_error(ErrorKind::refused, "deployctl run is turned off on this agent "
                                                  "(max_runs_per_app = 0 in agent.toml)");
        auto& running = runs->running[app];
        if (running >= m_options.max_runs_per_app)
            return make_error(ErrorKind::refused,
                              fmt::format("{} already has {} commands running (deployctl run), "
                                          "the most this agent allows (max_runs_per_app); try "
                                          "again when one has ended",
                                          app, running));
        ++running;
    }
    std::shared_ptr<void> slot(nullptr, [runs, app](void*) {
        std::lock_guard lock(runs->mutex);
        if (--runs->running[app] <= 0)
            runs->running.erase(app);
    });

    auto env = m_env->for_release(app, {});
    if (!env)
        return env.error();
    runtime::OneOffSpec spec;
    spec.release = {app, row.id};
    spec.release_dir = dir;
    spec.config = &*config;
    spec.env = env->run;
    spec.secret_names = env->secret_names;
    spec.argv = request.argv;
    spec.tty = request.tty;
    spec.stdin_open = request.stdin_open;
    spec.term = request.term;
    spec.purpose = "run";
    auto& runtime = runtime_for(app, row.id, *config);
    auto plan = runtime.one_off(spec);
    for (auto& [name, value] : spec.env)
        secrets::wipe(value);
    if (!plan)
        return plan.error();
    OneOff prepared;
    prepared.release = row.id;
    prepared.engine = runtime.name();
    prepared.plan = std::move(*plan);
    prepared.slot = std::move(slot);
    return prepared;
}

} // namespace agent
