#include <agent/acme/manager.hpp>
#include <agent/deploy/engine.hpp>
#include <agent/deploy/history.hpp>
#include <agent/logs/drain.hpp>
#include <common/address.hpp>
#include <common/config.hpp>
#include <common/fs.hpp>
#include <common/hash.hpp>
#include <common/log.hpp>

#include <algorithm>
#include <unistd.h>

namespace agent {

using common::ErrorKind;
using common::make_error;
using common::State;

std::unique_ptr<Service> make_service(ServiceOptions options) {
    return std::make_unique<Engine>(std::move(options));
}

Engine::Engine(ServiceOptions options)
    : m_options(std::move(options)),
      m_blob_store(m_options.blobs ? m_options.blobs
                                   : std::make_shared<BlobStore>(m_options.data_dir.blobs())),
      m_blobs(*m_blob_store), m_proxy(m_options.data_dir, m_options.proxy_bin, m_options.proxy),
      m_publisher(
          m_options.data_dir.proxy_routes(), m_options.data_dir.proxy_applied(),
          {[](const std::filesystem::path& file, std::string_view text) -> common::Status {
               TRY(common::ensure_directory(file.parent_path(), std::filesystem::perms::owner_all));
               return common::atomic_write_file(file, text);
           },
           [this] { m_proxy.reload(); }, [this] { return m_proxy.enabled(); },
           m_options.data_dir.proxy_log().string()}) {}

Engine::~Engine() {
    stop();
}

void Engine::stop() {
    if (m_stopping.exchange(true))
        return;
    if (m_certificates)
        m_certificates->stop(); // an issuance under way is abandoned; its challenge files go at the
                                // next start
    // The waiters test stopping() under their mutex, then block: taking each
    // mutex once between the store and the notify means none of them is
    // between the two (it would miss the notify, and wait for ever).
    { std::lock_guard lock(m_mutex); }
    m_cv.notify_all();
    { std::lock_guard lock(m_build_mutex); }
    m_build_cv.notify_all();
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(m_mutex);
        for (auto& [app, slot] : m_slots)
            if (slot->thread.joinable())
                threads.push_back(std::move(slot->thread));
    }
    for (auto& thread : threads)
        thread.join();
    {
        std::lock_guard lock(m_mutex);
        for (auto& [app, slot] : m_slots) {
            slot->spare_writer.reset(); // cancelled: the spare is not kept across a restart
            slot->cache_copier.reset(); // cancelled: nor is a copy made ahead
        }
    }
    join_drainers(true);
    if (m_supervisor.joinable())
        m_supervisor.join();
    if (m_cron.joinable())
        m_cron.join();
    if (m_waker.joinable())
        m_waker.join();
    if (m_wake_fd >= 0)
        ::close(m_wake_fd);
    m_wake_fd = -1;
    wait_cron_runs(); // m_stopping kills them
    stop_drains();
    if (m_container_runtime)
        m_container_runtime->shutdown(); // containers keep running
    std::lock_guard lock(m_mutex);
    for (auto& [app, slot] : m_slots)
        for (const auto& job : slot->queue) { // deployments only (drains run off it)
            EventLog events(m_options.data_dir.event_log(app, job.id), job.id);
            fail(app, job.id, State::queued, "cancelled: the agent stopped", events);
        }
}

Engine::AppSlot& Engine::slot(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto& slot = m_slots[app];
    if (!slot)
        slot = std::make_unique<AppSlot>();
    return *slot;
}

void Engine::enqueue(const std::string& app, Job job) {
    std::lock_guard lock(m_mutex);
    auto& slot = m_slots[app];
    if (!slot)
        slot = std::make_unique<AppSlot>();
    slot->queue.push_back(std::move(job));
    if (!slot->thread.joinable() && !stopping())
        slot->thread = std::thread(&Engine::worker_loop, this, app);
    m_cv.notify_all();
}

void Engine::worker_loop(std::string app) {
    AppSlot& my = slot(app);
    bool copy_pending = false; // the build cache's copy for the next build, once idle
    for (;;) {
        Job job;
        {
            std::unique_lock lock(m_mutex);
            auto ready = [&] { return stopping() || !my.queue.empty(); };
            // Deploys that come one right after another (a script, a pipeline) restore
            // the cache by copying, as the copy would run beside them; a copy made ahead
            // waits for the app to be left alone a moment.
            if (std::exchange(copy_pending, false) &&
                !m_cv.wait_for(lock, k_copy_ahead_after, ready)) {
                lock.unlock();
                std::lock_guard deploy(my.deploy_lock);
                copy_cache_ahead(app, my);
                continue;
            }
            m_cv.wait(lock, ready);
            if (stopping())
                return;
            job = std::move(my.queue.front());
            my.queue.pop_front();
        }
        std::lock_guard deploy(my.deploy_lock);
        run_deployment(app, job); // drains run off this lock (start_drain)
        keep_spare(app, my);
        copy_pending = my.cache_copy.has_value();
    }
}

void Engine::acquire_build_slot() {
    std::unique_lock lock(m_build_mutex);
    m_build_cv.wait(lock, [&] { return m_free_builds > 0 || stopping(); });
    --m_free_builds;
}

void Engine::release_build_slot() {
    {
        std::lock_guard lock(m_build_mutex);
        ++m_free_builds;
    }
    m_build_cv.notify_one();
}

bool Engine::sleep_unless_stopping(std::chrono::milliseconds duration) {
    std::unique_lock lock(m_mutex);
    return !m_cv.wait_for(lock, duration, [&] { return stopping(); });
}

common::Result<ReleaseInfo> Engine::create_deployment(NewDeployment deployment) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    std::int64_t seq = 0;
    if (!deployment.release.empty()) {
        auto parsed = common::release_number(deployment.release);
        if (!parsed)
            return make_error(ErrorKind::bad_request,
                              "\"release\" must be a release id like \"v2\", not \"" +
                                  deployment.release + "\"");
        seq = *parsed;
    }
    if (auto why = unsupported_limits(deployment.config, deployment.manifest); !why.empty())
        return make_error(ErrorKind::config,
                          "deploy.toml asks for limits the process engine cannot apply on this "
                          "server (" +
                              why + "; no writable cgroup controller under " +
                              m_options.cgroup_root + ", see deploy-agent serve's log)");
    // One release at a time takes a share of the traffic: it is finished first.
    if (auto canary = m_store->canary(deployment.app))
        return make_error(ErrorKind::refused,
                          deployment.app + " has a canary release, " + canary->release + " (" +
                              std::to_string(canary->percent) +
                              "% of the traffic); finish it first with deployctl canary promote "
                              "or deployctl canary abort");
    if (deployment.canary < 0 || deployment.canary > 100)
        return make_error(ErrorKind::bad_request, "\"canary\" is a percentage, 1 to 100");
    if (deployment.canary > 0 && !m_store->production(deployment.app))
        return make_error(ErrorKind::refused,
                          deployment.app + " has no PRODUCTION release for a canary to share the "
                                           "traffic with; deploy it without --canary first");
    TRY(m_options.disk.check(deployment.manifest.total_bytes(), "the release's files",
                             deployment.manifest.entries.size()));
    // The API pinned the manifest's blobs; once the release and its blob list
    // are recorded they are in use, so a collection that runs meanwhile sees
    // one or the other (m_collect_mutex).
    std::unique_lock collecting(m_collect_mutex);
    auto row = m_store->create(
        {deployment.app, deployment.config_text, deployment.commit, deployment.message,
         deployment.dirty,
         deployment.tree_digest.empty() ? deployment.manifest.digest() : deployment.tree_digest,
         common::sha256_hex(deployment.config_text), seq, deployment.cron});
    if (!row)
        return row.error();
    if (!deployment.blob_digests)
        deployment.blob_digests =
            std::make_shared<const std::vector<std::string>>(deployment.manifest.blob_digests());
    record_blobs(row->app, row->id, deployment);
    m_blobs.unpin(*deployment.blob_digests);
    collecting.unlock();
    EventLog(m_options.data_dir.event_log(row->app, row->id), row->id).state(State::queued);
    common::log_info("deployment " + deployment.app + " " + row->id + " queued");
    Job job;
    job.id = row->id;
    job.config = std::move(deployment.config);
    job.manifest = std::move(deployment.manifest);
    job.release_command = deployment.release_command;
    job.rebuild = deployment.rebuild;
    job.no_cache = deployment.no_cache;
    job.canary = deployment.canary;
    job.canary_auto = deployment.canary_auto;
    job.canary_max_error_bp = deployment.canary_max_error_bp;
    enqueue(row->app, std::move(job));
    return to_info(*row);
}

std::string Engine::app_url(const std::string& app) const {
    // serve() refused an unparsable --proxy-listen before the engine existed.
    auto listen = common::parse_host_port(m_options.proxy.listen, common::EmptyHost::allowed);
    const auto port = listen ? listen->port : 80;
    return "http://" + app + ".localhost:" + std::to_string(port) + "/";
}

ReleaseInfo Engine::to_info(const ReleaseRow& row,
                            const std::map<std::string, std::vector<ServedSpan>>* served) const {
    ReleaseInfo info;
    info.id = row.id;
    info.app = row.app;
    info.state = row.state;
    info.created_at = row.created_at;
    info.updated_at = row.updated_at;
    info.commit = row.commit;
    info.message = row.message;
    info.error = row.error;
    info.port = row.pid > 0 ? row.port : 0;
    info.dirty = row.dirty;
    info.tree_digest = row.tree_digest;
    info.config_digest = row.config_digest;
    if (served)
        if (auto it = served->find(row.id); it != served->end())
            info.served = it->second;
    return info;
}

AppStatus Engine::make_status(const std::string& app, const std::vector<ReleaseRow>& rows,
                              Detail detail) {
    AppStatus status;
    status.app = app;
    status.url = app_url(app);
    std::map<std::string, std::vector<ServedSpan>> served;
    if (detail == Detail::full) {
        auto history = m_store->switches(app);
        served = served_spans(history);
        if (auto previous = previous_release(history, rows))
            status.previous = *previous;
        status.next_release = "v" + std::to_string(m_store->next_seq(app).value_or(1));
    }
    const ReleaseRow* config_source = rows.empty() ? nullptr : &rows.front();
    std::optional<ReleaseRow> production;
    for (const auto& row : rows) {
        status.releases.push_back(to_info(row, &served));
        if (row.state == State::production) {
            status.production = row.id;
            status.commit = row.commit;
            config_source = &row;
            production = row;
        }
    }
    status.state = app_state(app, production);
    if (config_source) {
        auto config = common::parse_config(config_source->config, "deploy.toml");
        if (config)
            for (const auto& [name, target] : config->targets)
                for (const auto& domain : target.domains)
                    if (std::find(status.domains.begin(), status.domains.end(), domain) ==
                        status.domains.end())
                        status.domains.push_back(domain);
    }
    if (detail == Detail::full)
        status.drain = drain_status(app);
    return status;
}

std::vector<secrets::VarInfo> Engine::env(const std::string& app) {
    return m_env->list(app);
}

common::Result<std::string> Engine::hook_secret(const std::string& app, bool rotate) {
    if (!common::is_valid_app_name(app))
        return make_error(ErrorKind::usage, "invalid app name: " + app);
    return m_env->make_hook_secret(app, rotate);
}

common::Result<std::optional<std::string>> Engine::existing_hook_secret(const std::string& app) {
    return m_env->hook_secret(app);
}

common::Result<std::optional<std::string>> Engine::secret_value(const std::string& app,
                                                                const std::string& name) {
    return m_env->secret_value(app, name);
}

common::Result<bool> Engine::begin_delivery(const DeliveryRow& row) {
    return m_store->add_delivery(row);
}

common::Status Engine::finish_delivery(const DeliveryRow& row) {
    return m_store->finish_delivery(row);
}

std::optional<DeliveryRow> Engine::delivery(const std::string& app, const std::string& provider,
                                            const std::string& id) {
    return m_store->delivery(app, provider, id);
}

std::vector<DeliveryRow> Engine::deliveries(const std::string& app) {
    return m_store->deliveries(app, 50);
}

common::Result<std::optional<GitKeyRow>> Engine::git_key(const std::string& app, bool make,
                                                         bool rotate) {
    if (!common::is_valid_app_name(app))
        return make_error(ErrorKind::usage, "invalid app name: " + app);
    return m_env->git_key(app, make, rotate);
}

common::Result<std::optional<std::string>> Engine::git_private_key(const std::string& app) {
    return m_env->git_private_key(app);
}

std::vector<GitHostRow> Engine::git_hosts(const std::string& app) {
    return m_store->git_hosts(app);
}

common::Status Engine::add_git_host(const std::string& app, const std::string& host,
                                    const std::string& key) {
    return m_store->add_git_host(app, host, key);
}

common::Status Engine::forget_git_hosts(const std::string& app) {
    return m_store->forget_git_hosts(app);
}

std::vector<PreviewRow> Engine::previews(const std::string& app) {
    return m_store->previews(app);
}

common::Status Engine::put_preview(const PreviewRow& row) {
    return m_store->put_preview(row);
}

common::Status Engine::remove_preview(const std::string& app, int number) {
    return m_store->remove_preview(app, number);
}

std::string Engine::env_fingerprint(const std::string& app) {
    auto vars = m_env->list(app);
    std::sort(vars.begin(), vars.end(),
              [](const secrets::VarInfo& a, const secrets::VarInfo& b) { return a.name < b.name; });
    std::string text;
    for (const auto& var : vars)
        text += var.name + '\t' + var.updated_at + '\n';
    return common::sha256_hex(text);
}

common::Status Engine::set_env(const std::string& app, std::vector<secrets::NewVar> vars) {
    TRY(m_env->set(app, std::move(vars)));
    std::lock_guard lock(m_mutex);
    ++m_env_changes[app]; // a process started before has it no more
    return {};
}

common::Status Engine::unset_env(const std::string& app, const std::vector<std::string>& names) {
    TRY(m_env->unset(app, names));
    std::lock_guard lock(m_mutex);
    ++m_env_changes[app];
    return {};
}

common::Result<ReleaseInfo> Engine::release(const std::string& app, const std::string& id) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    auto row = m_store->get(app, id);
    if (!row)
        return row.error();
    auto served = served_spans(m_store->switches(app));
    return to_info(*row, &served);
}

common::Result<AppStatus> Engine::status(const std::string& app) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    auto rows = m_store->releases(app);
    // An app whose releases were all removed still has its next id (never reused).
    if (rows.empty() && !m_store->next_seq(app))
        return make_error(ErrorKind::not_found, "no app named " + app);
    return make_status(app, rows, Detail::full);
}

std::vector<AppStatus> Engine::apps() {
    std::vector<AppStatus> out;
    if (!m_started)
        return out;
    for (const auto& app : m_store->apps())
        out.push_back(make_status(app, m_store->releases(app), Detail::summary));
    return out;
}

} // namespace agent
