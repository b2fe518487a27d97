// A release's processes other than web ([processes] in deploy.toml): started
// once its web is live (or, with no web, while it provisions), stopped when it
// is replaced, restarted when they crash; and what deployctl ps shows.
#include <agent/deploy/engine.hpp>
#include <agent/runtime/process.hpp>
#include <common/duration.hpp>
#include <common/log.hpp>

#include <dirent.h>
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
    std::tm tm{};
    if (rfc3339.size() < 19 || !::strptime(rfc3339.c_str(), "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    const auto then = ::timegm(&tm);
    const auto now = std::time(nullptr);
    return now > then ? static_cast<std::int64_t>(now - then) : 0;
}

} // namespace

common::Status Engine::start_processes(const std::string& app, const std::string& id,
                                       const common::AppConfig& config, const EventLog& events) {
    if (config.processes.empty())
        return {};
    auto& runtime = runtime_for(app, id, config);
    auto recorded = recorded_processes(*m_store, app, id);
    common::Status first;
    for (const auto& [name, command] : config.processes) {
        const int instance = 1;
        ProcessRow row = new_row(app, id, name, instance);
        if (auto found = recorded.find(instance_name(name, instance)); found != recorded.end()) {
            row = found->second;
            if (row.pid > 0 && runtime.alive({row.pid, row.pid_start}))
                continue; // already running
        }
        auto process = start_app(runtime, app, id, config, 0, name, instance);
        if (!process) {
            events.log("system", "cannot start " + instance_name(name, instance) + ": " +
                                     process.error().message);
            if (first)
                first = make_error(process.error().kind, "cannot start " +
                                                             instance_name(name, instance) + ": " +
                                                             process.error().message);
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
        runtime.serving(process_ref(row));
        events.log("system", "started " + instance_name(name, instance) + " (pid " +
                                 std::to_string(process->pid) + "): " + command);
    }
    return first;
}

void Engine::stop_processes(const std::string& app, const std::string& id,
                            std::chrono::milliseconds grace) {
    auto rows = m_store->processes(app, id);
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
    common::log_info("stopped " + std::to_string(rows.size()) + " process" +
                     (rows.size() == 1 ? "" : "es") + " of " + app + " " + id);
}

common::Status Engine::check_processes(const std::string& app, const std::string& id,
                                       const common::AppConfig& config, const EventLog& events) {
    if (auto started = start_processes(app, id, config, events); !started) {
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
    events.health(true, 0, "every process stayed up for " +
                               common::format_duration(config.run.health.grace));
    return {};
}

void Engine::supervise_processes(const ReleaseRow& production) {
    auto config = common::parse_config(production.config, "deploy.toml");
    if (!config || config->processes.empty())
        return;
    auto& runtime = runtime_for(production.app, production.id, *config);
    const auto& app = production.app;
    auto recorded = recorded_processes(*m_store, app, production.id);
    EventLog events(m_options.data_dir.event_log(app, production.id), production.id);
    for (const auto& [name, command] : config->processes) {
        const int instance = 1;
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
            auto recovery =
                runtime.recover(process_ref(row), m_options.data_dir.process_log(app, production.id, name));
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
        auto process = start_app(runtime, app, production.id, *config, 0, name, instance);
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
        if (auto put = m_store->put_process(row); !put)
            common::log_error(put.error().message);
        runtime.serving(process_ref(row));
        const std::string note = was_recorded ? key + " " + reason + "; restarted (pid " +
                                                    std::to_string(process->pid) + ")"
                                              : "started " + key + " (pid " +
                                                    std::to_string(process->pid) + ")";
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
        const std::string name = row.app + " " + row.release + " " +
                                 instance_name(row.process, row.instance);
        if (serving) {
            if (row.pid > 0 && runtime.alive(process)) {
                runtime.adopt(process_ref(row), process,
                              m_options.data_dir.process_log(row.app, row.release, row.process));
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
    if (config->has_web()) {
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
        info.state = row.pid > 0 && runtime.alive({row.pid, row.pid_start}) ? "running"
                                                                               : "crashed";
        list.processes.push_back(std::move(info));
    }
    // Configured but not (yet) recorded: a stopped app, or one the supervisor starts.
    for (const auto& [name, command] : config->processes) {
        const bool listed =
            std::any_of(list.processes.begin(), list.processes.end(),
                        [&](const ProcessInfo& p) { return p.process == name; });
        if (!listed) {
            ProcessInfo info;
            info.process = name;
            info.state = list.stopped ? "stopped" : "starting";
            list.processes.push_back(std::move(info));
        }
    }
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
            info.process == "web" ? runtime::ReleaseRef{app, production->id}
                                  : runtime::ReleaseRef{app, production->id, info.process,
                                                        info.instance});
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
