// A release's processes other than web ([processes] in deploy.toml): started
// once its web is live (or, with no web, while it provisions), stopped when it
// is replaced, restarted when they crash; and what deployctl ps shows.
#include <agent/deploy/engine.hpp>
#include <agent/runtime/http_probe.hpp>
#include <agent/runtime/process.hpp>
#include <common/duration.hpp>
#include <common/log.hpp>
#include <common/timestamp.hpp>

#include <algorithm>
#include <dirent.h>
#include <tuple>
#include <unistd.h>

namespace agent {

using common::ErrorKind;
using common::make_error;
using common::State;

namespace {

constexpr std::chrono::milliseconds k_grace_poll{100};
constexpr std::chrono::milliseconds k_cpu_sample{250};

std::string now_text() {
    char buffer[32];
    return std::string(common::now_rfc3339(buffer));
}

std::string instance_name(const std::string& process, int instance) {
    return process + "." + std::to_string(instance);
}

ProcessRow new_row(const std::string& app, const std::string& id, const std::string& process,
                   int instance) {
    ProcessRow row;
    row.app = app;
    row.release = id;
    row.process = process;
    row.instance = instance;
    return row;
}

// The release's recorded processes by "NAME.INSTANCE".
std::map<std::string, ProcessRow> recorded_processes(Store& store, const std::string& app,
                                                     const std::string& id) {
    std::map<std::string, ProcessRow> recorded;
    for (auto& row : store.processes(app, id))
        recorded[instance_name(row.process, row.instance)] = std::move(row);
    return recorded;
}

// What /proc says of every process: parent, CPU ticks, resident pages.
struct ProcStat {
    pid_t ppid = 0;
    std::uint64_t ticks = 0;
    std::uint64_t rss_pages = 0;
};

std::map<pid_t, ProcStat> read_proc() {
    std::map<pid_t, ProcStat> out;
    DIR* dir = ::opendir("/proc");
    if (!dir)
        return out;
    while (auto* entry = ::readdir(dir)) {
        char* end = nullptr;
        const long pid = std::strtol(entry->d_name, &end, 10);
        if (pid <= 0 || *end != '\0')
            continue;
        auto fields = runtime::live_stat_fields(entry->d_name);
        if (!fields || fields->size() < 22)
            continue;
        const auto& f = *fields;
        ProcStat stat;
        stat.ppid = static_cast<pid_t>(std::stol(f[1]));
        stat.ticks = std::stoull(f[11]) + std::stoull(f[12]);
        stat.rss_pages = std::stoull(f[21]);
        out[static_cast<pid_t>(pid)] = stat;
    }
    ::closedir(dir);
    return out;
}

// The process and its descendants.
std::vector<pid_t> tree_of(pid_t root, const std::map<pid_t, ProcStat>& procs) {
    std::multimap<pid_t, pid_t> children;
    for (const auto& [pid, stat] : procs)
        children.emplace(stat.ppid, pid);
    std::vector<pid_t> tree;
    if (!procs.count(root))
        return tree;
    tree.push_back(root);
    for (std::size_t i = 0; i < tree.size(); ++i) {
        auto [begin, end] = children.equal_range(tree[i]);
        for (auto it = begin; it != end; ++it)
            tree.push_back(it->second);
    }
    return tree;
}

std::int64_t seconds_since(const std::string& rfc3339) {
    const auto then = common::parse_rfc3339(rfc3339);
    if (!then)
        return 0;
    const auto elapsed = common::now_micros() - *then;
    return elapsed > 0 ? elapsed / 1000000 : 0;
}

} // namespace

common::Status Engine::start_processes(const std::string& app, const std::string& id,
                                       const common::AppConfig& config, const EventLog& events,
                                       Serving serving) {
    if (config.processes.empty())
        return {};
    auto& runtime = runtime_for(app, id, config);
    auto recorded = recorded_processes(*m_store, app, id);
    common::Status first;
    for (const auto& [name, command] : config.processes)
        for (int instance = 1, count = instances_of(app, name); instance <= count; ++instance) {
            ProcessRow row = new_row(app, id, name, instance);
            if (auto found = recorded.find(instance_name(name, instance));
                found != recorded.end()) {
                row = found->second;
                if (row.pid > 0 && runtime.alive({row.pid, row.pid_start})) {
                    if (serving == Serving::all) // started while the release was checked
                        runtime.serving(process_ref(row));
                    continue; // already running
                }
            }
            auto process = start_app(runtime, app, id, config, 0, name, instance);
            if (!process) {
                events.log("system", "cannot start " + instance_name(name, instance) + ": " +
                                         process.error().message);
                if (first)
                    first = make_error(process.error().kind, "cannot start " +
                                                                 instance_name(name, instance) +
                                                                 ": " + process.error().message);
                continue;
            }
            row.pid = process->pid;
            row.pid_start = process->start;
            row.started_at = now_text();
            if (auto put = db_write([&] { return m_store->put_process(row); }); !put) {
                runtime.stop(process_ref(row), *process, config.deploy.stop_timeout);
                if (first)
                    first = put;
                continue;
            }
            if (serving != Serving::none)
                runtime.serving(process_ref(row));
            events.log("system", "started " + instance_name(name, instance) + " (pid " +
                                     std::to_string(process->pid) + "): " + command);
        }
    return first;
}

void Engine::stop_processes(const std::string& app, const std::string& id,
                            std::chrono::milliseconds grace, Which which) {
    auto rows = m_store->processes(app, id);
    if (which != Which::all)
        rows.erase(std::remove_if(rows.begin(), rows.end(),
                                  [&](const ProcessRow& row) {
                                      return (row.process == "web") != (which == Which::web);
                                  }),
                   rows.end());
    if (rows.empty())
        return;
    auto row = m_store->get(app, id);
    auto& runtime = row ? runtime_for(*row) : *m_process_runtime;
    // All at once: each gets its whole grace, not what the ones before left.
    std::vector<std::thread> stopping;
    for (const auto& process : rows)
        stopping.emplace_back([&, process] {
            runtime.stop(process_ref(process), {process.pid, process.pid_start}, grace);
        });
    for (auto& thread : stopping)
        thread.join();
    for (const auto& process : rows)
        if (auto removed = db_write([&] {
                return m_store->remove_process(app, id, process.process, process.instance);
            });
            !removed)
            common::log_error(removed.error().message);
    {
        std::lock_guard lock(m_routes_mutex);
        for (const auto& process : rows)
            if (process.process == "web")
                m_failing.erase(web_key(app, id, process.port));
    }
    common::log_info("stopped " + std::to_string(rows.size()) + " process" +
                     (rows.size() == 1 ? "" : "es") + " of " + app + " " + id);
}

common::Status Engine::check_processes(const std::string& app, const std::string& id,
                                       const common::AppConfig& config, const EventLog& events) {
    // Not PRODUCTION yet: a process that exits now fails the release, and is not restarted
    // by the engine behind the check's back.
    if (auto started = start_processes(app, id, config, events, Serving::none); !started) {
        stop_processes(app, id, config.deploy.stop_timeout);
        return started;
    }
    auto& runtime = runtime_for(app, id, config);
    events.log("system", "no web process: healthy once every process stays up for " +
                             common::format_duration(config.run.health.grace));
    const auto deadline = std::chrono::steady_clock::now() + config.run.health.grace;
    for (;;) {
        for (const auto& row : m_store->processes(app, id)) {
            if (auto exited = runtime.exited(process_ref(row), {row.pid, row.pid_start})) {
                auto message = instance_name(row.process, row.instance) + ": " + *exited;
                stop_processes(app, id, config.deploy.stop_timeout);
                return make_error(ErrorKind::failed, message);
            }
        }
        if (std::chrono::steady_clock::now() >= deadline)
            break;
        if (!sleep_unless_stopping(k_grace_poll)) {
            stop_processes(app, id, config.deploy.stop_timeout);
            return make_error(ErrorKind::failed,
                              "interrupted: the agent stopped while the release was starting");
        }
    }
    events.health(
        true, 0, "every process stayed up for " + common::format_duration(config.run.health.grace));
    return {};
}

void Engine::supervise_processes(const ReleaseRow& production) {
    auto config = common::parse_config(production.config, "deploy.toml");
    if (!config)
        return;
    // Asleep ([deploy] idle_stop): no web instance runs, nor any other
    // process with idle_stop_workers.
    const bool asleep = sleeping(production.app, *config);
    const bool workers_asleep = asleep && config->deploy.idle_stop_workers;
    const int web_count = config->has_web() && !asleep ? instances_of(production.app, "web") : 0;
    auto count_of = [&](const std::string& process) {
        return workers_asleep ? 0 : instances_of(production.app, process);
    };
    if (config->processes.empty() && web_count <= 1 &&
        m_store->processes(production.app, production.id).empty())
        return;
    auto& runtime = runtime_for(production.app, production.id, *config);
    const auto& app = production.app;
    auto recorded = recorded_processes(*m_store, app, production.id);
    EventLog events(m_options.data_dir.event_log(app, production.id), production.id);
    // Instances past the counts (scaled down while one was restarting, a
    // process no longer in the release): stopped.
    for (const auto& [key, row] : recorded) {
        const bool web = row.process == "web";
        const bool wanted =
            web ? row.instance <= web_count
                : config->processes.count(row.process) && row.instance <= count_of(row.process);
        if (wanted)
            continue;
        common::log_info("stopping " + app + " " + production.id + " " + key +
                         ": past the scaled count");
        if (web)
            retire_web_instances(app, production.id, {row}, *config);
        else {
            runtime.stop(process_ref(row), {row.pid, row.pid_start}, config->deploy.stop_timeout);
            if (auto removed =
                    m_store->remove_process(app, production.id, row.process, row.instance);
                !removed)
                common::log_error(removed.error().message);
        }
    }
    std::vector<std::pair<std::string, int>> wanted;
    for (int instance = 2; instance <= web_count; ++instance)
        wanted.emplace_back("web", instance);
    for (const auto& [name, command] : config->processes)
        for (int instance = 1, count = count_of(name); instance <= count; ++instance)
            wanted.emplace_back(name, instance);
    for (const auto& [name, instance] : wanted) {
        const std::string key = instance_name(name, instance);
        ProcessRow row = new_row(app, production.id, name, instance);
        std::string reason = "was not running";
        if (auto found = recorded.find(key); found != recorded.end()) {
            row = found->second;
            if (row.pid > 0) {
                if (auto status = runtime::reap_if_exited(row.pid))
                    reason = "exited with " + *status;
                else if (runtime.alive({row.pid, row.pid_start}))
                    continue;
                else
                    reason = "exited";
            }
            // A container the engine restarted on its own is running again.
            auto recovery = runtime.recover(process_ref(row), log_of(row));
            if (recovery.kind == runtime::Runtime::Recovery::pending)
                continue;
            if (recovery.kind == runtime::Runtime::Recovery::running) {
                row.pid = recovery.process.pid;
                row.pid_start = recovery.process.start;
                ++row.restarts;
                if (auto put = m_store->put_process(row); !put)
                    common::log_error(put.error().message);
                events.log("system", key + ": " + recovery.note);
                continue;
            }
            if (!recovery.note.empty()) // "exceeded memory limit 64m", "container exited ..."
                reason = recovery.note;
        }
        if (!restart_due(app + "/" + key))
            continue;
        if (name == "web" && row.port <= 0) {
            auto port = runtime::pick_free_port(m_options.app_ports);
            if (!port) {
                common::log_error("cannot start " + app + " " + production.id + " " + key + ": " +
                                  port.error().message);
                continue;
            }
            row.port = *port;
        }
        auto process = start_app(runtime, app, production.id, *config, row.port, name, instance);
        if (!process) {
            common::log_error("cannot restart " + app + " " + production.id + " " + key + ": " +
                              process.error().message);
            continue;
        }
        const bool was_recorded = recorded.count(key) > 0;
        row.pid = process->pid;
        row.pid_start = process->start;
        row.started_at = now_text();
        if (was_recorded) {
            ++row.restarts;
            row.last_exit = reason;
        }
        if (name == "web") { // routed once its check passes
            std::lock_guard lock(m_routes_mutex);
            m_failing[web_key(app, production.id, row.port)] = k_failed_checks;
        }
        if (auto put = m_store->put_process(row); !put)
            common::log_error(put.error().message);
        runtime.serving(process_ref(row));
        const std::string note =
            was_recorded
                ? key + " " + reason + "; restarted (pid " + std::to_string(process->pid) + ")" +
                      (name == "web" ? ": not routed until it passes its health check" : "")
                : "started " + key + " (pid " + std::to_string(process->pid) + ")";
        events.log("system", note);
        common::log_warn(app + " " + production.id + ": " + note);
    }
}

void Engine::reconcile_processes() {
    for (const auto& row : m_store->all_processes()) {
        auto release = m_store->get(row.app, row.release);
        const bool serving =
            release && release->state == State::production && !m_store->stopped(row.app);
        auto& runtime = release ? runtime_for(*release) : *m_process_runtime;
        const runtime::AppProcess process{row.pid, row.pid_start};
        const std::string name =
            row.app + " " + row.release + " " + instance_name(row.process, row.instance);
        if (serving) {
            if (row.pid > 0 && runtime.alive(process)) {
                runtime.adopt(process_ref(row), process, log_of(row));
                common::log_info("adopted running " + name + " (pid " + std::to_string(row.pid) +
                                 ")");
            }
            continue; // else the supervisor starts it again
        }
        auto config = release ? common::parse_config(release->config, "deploy.toml")
                              : common::Result<common::AppConfig>(common::AppConfig{});
        common::log_info("stopping leftover " + name);
        runtime.stop(process_ref(row), process,
                     config ? config->deploy.stop_timeout : k_stop_grace);
        if (auto removed = m_store->remove_process(row.app, row.release, row.process, row.instance);
            !removed)
            common::log_error(removed.error().message);
    }
}

int Engine::instances_of(const std::string& app, const std::string& process) const {
    auto counts = m_store->scale(app);
    auto found = counts.find(process);
    return found == counts.end() ? 1 : found->second;
}

std::vector<std::pair<int, std::string>> Engine::web_instances(const ReleaseRow& row) {
    std::vector<std::pair<int, std::string>> instances;
    if (row.port > 0)
        instances.emplace_back(row.port, instance_name("web", 1));
    for (const auto& process : m_store->processes(row.app, row.id))
        if (process.process == "web" && process.port > 0)
            instances.emplace_back(process.port, instance_name("web", process.instance));
    return instances;
}

std::vector<int> Engine::web_ports(const ReleaseRow& row) {
    std::vector<int> ports;
    for (const auto& [port, name] : web_instances(row))
        ports.push_back(port);
    return ports;
}

common::Status Engine::start_web_instances(const std::string& app, const std::string& id,
                                           const common::AppConfig& config,
                                           const EventLog& events) {
    const int count = instances_of(app, "web");
    if (count <= 1)
        return {};
    auto& runtime = runtime_for(app, id, config);
    auto recorded = recorded_processes(*m_store, app, id);
    std::vector<ProcessRow> started;
    auto undo = [&](common::Error error) -> common::Status {
        for (const auto& row : started) {
            runtime.stop(process_ref(row), {row.pid, row.pid_start}, k_stop_grace);
            if (auto removed = m_store->remove_process(app, id, "web", row.instance); !removed)
                common::log_error(removed.error().message);
        }
        return error;
    };
    for (int instance = 2; instance <= count; ++instance) {
        const std::string key = instance_name("web", instance);
        ProcessRow row = new_row(app, id, "web", instance);
        if (auto found = recorded.find(key); found != recorded.end()) {
            row = found->second;
            if (row.pid > 0 && runtime.alive({row.pid, row.pid_start}))
                continue; // already running
        }
        if (row.port <= 0) {
            auto port = runtime::pick_free_port(m_options.app_ports);
            if (!port)
                return undo(port.error());
            row.port = *port;
        }
        auto process = start_app(runtime, app, id, config, row.port, "web", instance);
        if (!process)
            return undo(make_error(process.error().kind,
                                   "cannot start " + key + ": " + process.error().message));
        row.pid = process->pid;
        row.pid_start = process->start;
        row.started_at = now_text();
        if (auto put = db_write([&] { return m_store->put_process(row); }); !put) {
            runtime.stop(process_ref(row), *process, k_stop_grace);
            return undo(put.error());
        }
        started.push_back(row);
        events.log("system", "started " + key + " on port " + std::to_string(row.port) + " (pid " +
                                 std::to_string(process->pid) + ")");
        if (auto healthy = wait_healthy(runtime, process_ref(row), *process, row.port,
                                        config.run.health, events);
            !healthy)
            return undo(make_error(ErrorKind::failed, key + ": " + healthy.error().message));
        runtime.serving(process_ref(row));
        std::lock_guard lock(m_routes_mutex);
        m_failing.erase(web_key(app, id, row.port));
    }
    return {};
}

void Engine::retire_web_instances(const std::string& app, const std::string& id,
                                  const std::vector<ProcessRow>& rows,
                                  const common::AppConfig& config) {
    if (rows.empty())
        return;
    auto key = [&](const ProcessRow& row) { return web_key(app, id, row.port); };
    {
        std::lock_guard lock(m_routes_mutex);
        for (const auto& row : rows)
            m_leaving.insert(key(row));
    }
    publish_routes_or_log("for web instances leaving " + app + " " + id);
    std::vector<int> ports;
    for (const auto& row : rows)
        ports.push_back(row.port);
    wait_drained(ports, config.deploy.drain);
    auto& runtime = runtime_for(app, id, config);
    std::vector<std::thread> stopping;
    for (const auto& row : rows)
        stopping.emplace_back([&, row] {
            runtime.stop(process_ref(row), {row.pid, row.pid_start}, config.deploy.stop_timeout);
        });
    for (auto& thread : stopping)
        thread.join();
    for (const auto& row : rows)
        if (auto removed =
                db_write([&] { return m_store->remove_process(app, id, "web", row.instance); });
            !removed)
            common::log_error(removed.error().message);
    std::lock_guard lock(m_routes_mutex);
    for (const auto& row : rows) {
        m_leaving.erase(key(row));
        m_failing.erase(key(row));
    }
}

void Engine::restart_web_instances(const std::string& app, const std::string& id,
                                   const common::AppConfig& config, const EventLog& events) {
    for (const auto& row : m_store->processes(app, id)) {
        if (row.process != "web")
            continue;
        retire_web_instances(app, id, {row}, config);
        if (auto started = start_web_instances(app, id, config, events); !started)
            common::log_warn(app + " " + id + ": " + started.error().message +
                             "; the supervisor tries again");
        publish_routes_or_log("for the restarted " + app + " " + id + " " +
                              instance_name("web", row.instance));
    }
}

void Engine::check_web_instances(const ReleaseRow& production, const common::AppConfig& config) {
    const auto& app = production.app;
    std::vector<ProcessRow> instances;
    for (auto& row : m_store->processes(app, production.id))
        if (row.process == "web" && row.port > 0)
            instances.push_back(std::move(row));
    if (instances.empty())
        return; // one instance: deploy-proxy routes to it whatever it answers
    const auto now = std::chrono::steady_clock::now();
    {
        std::lock_guard lock(m_mutex);
        auto& last = m_probed[app];
        if (now - last < std::max(config.run.health.interval, std::chrono::milliseconds(500)))
            return;
        last = now;
    }
    ProcessRow first = new_row(app, production.id, "web", 1);
    first.port = production.port;
    first.pid = production.pid;
    first.pid_start = production.pid_start;
    if (first.port > 0)
        instances.insert(instances.begin(), first);
    auto& runtime = runtime_for(app, production.id, config);
    const auto timeout = std::clamp(config.run.health.interval, std::chrono::milliseconds(500),
                                    std::chrono::milliseconds(2000));
    std::vector<std::string> notes;
    bool changed = false;
    for (const auto& row : instances) {
        const bool alive = row.pid > 0 && runtime.alive({row.pid, row.pid_start});
        runtime::ProbeResult probe{0, "not running"};
        if (alive)
            probe = runtime::http_probe(row.port, config.run.health.path, timeout);
        const std::string key = web_key(app, production.id, row.port);
        const std::string name = instance_name("web", row.instance);
        std::lock_guard lock(m_routes_mutex);
        auto found = m_failing.find(key);
        const bool was_routed = found == m_failing.end() || found->second < k_failed_checks;
        if (probe.healthy()) {
            if (found != m_failing.end()) {
                m_failing.erase(found);
                if (!was_routed) {
                    changed = true;
                    notes.push_back(name + " passes its health check again: routed");
                }
            }
            continue;
        }
        int& failures = m_failing[key];
        failures = alive ? std::min(failures + 1, k_failed_checks) : k_failed_checks;
        if (was_routed && failures >= k_failed_checks) {
            changed = true;
            notes.push_back(name + " failed its health check (" + config.run.health.path + ": " +
                            probe.message + "): not routed until it passes");
        }
    }
    if (!changed)
        return;
    EventLog events(m_options.data_dir.event_log(app, production.id), production.id);
    for (const auto& note : notes) {
        events.log("system", note);
        common::log_warn(app + " " + production.id + ": " + note);
    }
    publish_routes_or_log("after a web instance's health check");
}

common::Status Engine::apply_scale(const ReleaseRow& row, const common::AppConfig& config,
                                   const EventLog& events) {
    const auto& app = row.app;
    common::Status first;
    auto keep = [&](common::Status status) {
        if (!status && first)
            first = std::move(status);
    };
    if (config.has_web()) {
        const int web = instances_of(app, "web");
        std::vector<ProcessRow> leaving;
        for (const auto& process : m_store->processes(app, row.id))
            if (process.process == "web" && process.instance > web)
                leaving.push_back(process);
        auto& runtime = runtime_for(row);
        const bool web_alive = row.pid > 0 && runtime.alive({row.pid, row.pid_start});
        if (web == 0) { // unrouted (503) first, then drained and stopped
            const std::string key = web_key(app, row.id, row.port);
            keep(publish_routes()); // the count is 0: the table says "scaled to zero"
            retire_web_instances(app, row.id, leaving, config);
            if (row.port > 0) {
                wait_drained({row.port}, config.deploy.drain);
                runtime.stop({app, row.id}, {row.pid, row.pid_start}, config.deploy.stop_timeout);
                keep(db_write([&] { return m_store->set_process(app, row.id, 0, 0, 0); }));
                std::lock_guard lock(m_routes_mutex);
                m_failing.erase(key);
            }
            events.log("system", "web scaled to 0: deploy-proxy answers 503 for " + app);
        } else if (web > 0 && !web_alive) { // from 0: web.1 (and the others) healthy, then routed
            auto started = start_production(row, config, "web scaled to " + std::to_string(web));
            if (started)
                keep(publish_routes());
            else
                keep(started.error());
        } else if (web > 0) {
            retire_web_instances(app, row.id, leaving, config);
            keep(start_web_instances(app, row.id, config, events));
            keep(publish_routes());
        }
    }
    // The other processes: those past their count stop, the missing ones start.
    for (const auto& process : m_store->processes(app, row.id)) {
        if (process.process == "web" || !config.processes.count(process.process) ||
            process.instance <= instances_of(app, process.process))
            continue;
        runtime_for(row).stop(process_ref(process), {process.pid, process.pid_start},
                              config.deploy.stop_timeout);
        if (auto removed = db_write([&] {
                return m_store->remove_process(app, row.id, process.process, process.instance);
            });
            !removed)
            keep(removed.error());
        else
            events.log("system", "stopped " + instance_name(process.process, process.instance) +
                                     " (scaled down)");
    }
    keep(start_processes(app, row.id, config, events));
    return first;
}

common::Result<ProcessList> Engine::scale(const std::string& app,
                                          const std::map<std::string, int>& counts) {
    TRY(known_app(app));
    {
        std::lock_guard deploy(slot(app).deploy_lock);
        auto row = production_of(app, "scale");
        if (!row)
            return row.error();
        auto config = common::parse_config(row->config, "deploy.toml");
        if (!config)
            return config.error();
        if (config->static_site)
            return make_error(ErrorKind::refused,
                              app + " " + row->id +
                                  " is a [static] site: deploy-proxy serves its files and no "
                                  "process runs to scale");
        std::string known = config->has_web() ? "web" : "";
        for (const auto& [name, command] : config->processes)
            known += (known.empty() ? "" : ", ") + name;
        std::string described;
        for (const auto& [name, count] : counts) {
            const bool exists = name == "web" ? config->has_web() : config->processes.count(name);
            if (!exists)
                return make_error(ErrorKind::bad_request,
                                  app + " " + row->id + " has no process named '" + name +
                                      "' (its processes: " + known +
                                      "; [processes] in deploy.toml names them)");
            if (count < 0 || count > k_max_instances)
                return make_error(ErrorKind::bad_request, name + "=" + std::to_string(count) +
                                                              ": a count is 0 to " +
                                                              std::to_string(k_max_instances));
            described += (described.empty() ? "" : " ") + name + "=" + std::to_string(count);
        }
        if (counts.empty())
            return make_error(ErrorKind::bad_request,
                              "nothing to scale: give PROCESS=COUNT, e.g. web=2");
        TRY(db_write([&] { return m_store->set_scale(app, counts, "scaled: " + described); }));
        EventLog events(m_options.data_dir.event_log(app, row->id), row->id);
        events.log("system", "scale " + described + " (deployctl scale)" +
                                 (m_store->stopped(app) ? "; the app is stopped: the counts "
                                                          "apply when it starts"
                                                        : ""));
        common::log_info("scale " + app + ": " + described);
        if (!m_store->stopped(app))
            if (auto applied = apply_scale(*row, *config, events); !applied)
                return make_error(applied.error().kind,
                                  "scaled " + app + " to " + described + ", but " +
                                      applied.error().message +
                                      "; the counts are kept and the agent keeps trying "
                                      "(deployctl ps shows each instance)");
    }
    return processes(app);
}

common::Result<ProcessList> Engine::processes(const std::string& app) {
    TRY(known_app(app));
    auto production = m_store->production(app);
    if (!production)
        return make_error(ErrorKind::not_found, app + " has no PRODUCTION release");
    auto config = common::parse_config(production->config, "deploy.toml");
    if (!config)
        return config.error();
    ProcessList list;
    list.app = app;
    list.release = production->id;
    list.stopped = m_store->stopped(app);
    auto* web_runtime = running_runtime(*production);
    auto& runtime = runtime_for(*production);
    list.engine = config->static_site ? "static" : runtime.name();
    if (!config->static_site) {
        if (config->has_web())
            list.scale["web"] = instances_of(app, "web");
        for (const auto& [name, command] : config->processes)
            list.scale[name] = instances_of(app, name);
    }
    if (config->has_web() && list.scale["web"] > 0) {
        ProcessInfo web;
        web.process = "web";
        web.instance = 1;
        web.pid = production->pid;
        web.started_at = production->pid > 0 ? production->started_at : std::string();
        web.restarts = production->restarts;
        web.last_exit = production->last_exit;
        web.state = web_runtime && web_runtime->alive({production->pid, production->pid_start})
                        ? "running"
                        : (list.stopped ? "stopped" : "crashed");
        list.processes.push_back(std::move(web));
    }
    for (const auto& row : m_store->processes(app, production->id)) {
        ProcessInfo info;
        info.process = row.process;
        info.instance = row.instance;
        info.pid = row.pid;
        info.started_at = row.started_at;
        info.restarts = row.restarts;
        info.last_exit = row.last_exit;
        info.state = row.pid > 0 && runtime.alive({row.pid, row.pid_start}) ? "running" : "crashed";
        list.processes.push_back(std::move(info));
    }
    // Counted but not (yet) recorded: a stopped app, or one the supervisor starts.
    for (const auto& [name, count] : list.scale)
        for (int instance = name == "web" ? 2 : 1; instance <= count; ++instance) {
            const bool listed = std::any_of(
                list.processes.begin(), list.processes.end(),
                [&](const ProcessInfo& p) { return p.process == name && p.instance == instance; });
            if (!listed) {
                ProcessInfo info;
                info.process = name;
                info.instance = instance;
                info.state = list.stopped ? "stopped" : "starting";
                list.processes.push_back(std::move(info));
            }
        }
    // web first, then by name and instance.
    std::stable_sort(list.processes.begin(), list.processes.end(),
                     [](const ProcessInfo& a, const ProcessInfo& b) {
                         return std::make_tuple(a.process != "web", a.process, a.instance) <
                                std::make_tuple(b.process != "web", b.process, b.instance);
                     });
    // Memory and CPU of each one's process tree, CPU over a short sample.
    const auto before = read_proc();
    std::this_thread::sleep_for(k_cpu_sample);
    const auto after = read_proc();
    const long page = ::sysconf(_SC_PAGESIZE);
    const long hz = ::sysconf(_SC_CLK_TCK);
    for (auto& info : list.processes) {
        if (info.state != "running") {
            info.pid = 0;
            info.started_at.clear();
            continue;
        }
        info.uptime_s = seconds_since(info.started_at);
        info.container = runtime.container_name(
            info.process == "web" && info.instance == 1
                ? runtime::ReleaseRef{app, production->id}
                : runtime::ReleaseRef{app, production->id, info.process, info.instance});
        std::uint64_t ticks_before = 0, ticks_after = 0;
        for (pid_t pid : tree_of(info.pid, after)) {
            const auto& now = after.at(pid);
            info.rss_bytes += now.rss_pages * static_cast<std::uint64_t>(page);
            ticks_after += now.ticks;
            if (auto then = before.find(pid); then != before.end())
                ticks_before += then->second.ticks;
        }
        const double seconds = std::chrono::duration<double>(k_cpu_sample).count();
        if (hz > 0 && ticks_after >= ticks_before)
            info.cpu_percent =
                100.0 * static_cast<double>(ticks_after - ticks_before) / hz / seconds;
    }
    return list;
}

} // namespace agent
