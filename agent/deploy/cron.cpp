// [[cron]] jobs (docs/cron.md): a thread that wakes at each minute, finds the
// jobs due in the PRODUCTION release's deploy.toml, claims the due minute in
// state.db (app + job, not release: a switch cannot run a minute twice) and
// runs each as a one-off command (Runtime::one_off, purpose "cron") on a
// thread of its own, one run of a job at a time, its output in
// apps/APP/logs/cron.JOB.log.
#include <agent/deploy/engine.hpp>
#include <agent/logs/stamp.hpp>
#include <agent/runtime/command.hpp>
#include <agent/runtime/process.hpp>
#include <agent/secrets/redact.hpp>
#include <common/cron.hpp>
#include <common/duration.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <date/date.h>
#include <fstream>
#include <signal.h>

namespace agent {

using common::ErrorKind;
using common::make_error;
using namespace std::chrono;

namespace {

// How far back a due minute is still run: a tick that came late (a busy
// machine) still runs it; a longer gap (the agent was down) does not.
constexpr minutes k_catch_up{2};

std::string rfc3339(system_clock::time_point t) {
    return date::format("%FT%TZ", date::floor<seconds>(t));
}

std::string job_key(const std::string& app, const std::string& job) {
    return app + "/" + job;
}

// The latest due minute of `schedule` in (minute - k_catch_up, minute].
std::optional<common::SysMinutes> latest_due(const common::CronSchedule& schedule,
                                             const std::string& timezone,
                                             common::SysMinutes minute) {
    std::optional<common::SysMinutes> due;
    for (auto t = common::next_cron_time(schedule, timezone, minute - k_catch_up);
         t && *t <= minute; t = common::next_cron_time(schedule, timezone, *t))
        due = t;
    return due;
}

} // namespace

// After a crash: a run the agent started before is still going (a process
// in its own group; a container is removed with the other one-offs). It is
// killed, so that two runs of a job never overlap, and recorded.
void Engine::end_orphaned_cron_runs() {
    for (const auto& orphan : m_store->cron_processes()) {
        const auto start = runtime::process_start_time(orphan.pid);
        if (start && *start == orphan.pid_start) {
            ::kill(-orphan.pid, SIGKILL);
            common::log_warn(fmt::format("cron {} {}: killed the run the agent left before it "
                                         "restarted (pid {})",
                                         orphan.app, orphan.job, orphan.pid));
        }
        const auto now = rfc3339(system_clock::now());
        std::ofstream log(m_options.data_dir.cron_log(orphan.app, orphan.job), std::ios::app);
        log << logs::stamp_now()
            << fmt::format("--- cron {}: interrupted: the agent restarted during the run "
                           "(ended {}) ---\n",
                           orphan.job, now);
        auto runs = m_store->cron_jobs(orphan.app);
        for (auto& run : runs)
            if (run.job == orphan.job) {
                run.finished = now;
                run.exit_status = -1;
                run.outcome = "failed";
                if (auto recorded = m_store->record_cron_run(orphan.app, orphan.job, run);
                    !recorded)
                    common::log_error(recorded.error().message);
            }
        if (auto cleared = m_store->set_cron_process(orphan.app, orphan.job, 0, 0); !cleared)
            common::log_error(cleared.error().message);
    }
}

void Engine::end_cron_runs(const std::string& app) {
    for (const auto& run : m_store->cron_processes()) {
        if (run.app != app)
            continue;
        const auto start = runtime::process_start_time(run.pid);
        if (start && *start == run.pid_start)
            ::kill(-run.pid, SIGKILL); // its thread records it, and removes a container
    }
    const std::string prefix = app + "/";
    std::unique_lock lock(m_cron_mutex);
    m_cron_cv.wait_for(lock, seconds(10), [&] {
        return std::none_of(m_cron_running.begin(), m_cron_running.end(),
                            [&](const std::string& key) { return key.rfind(prefix, 0) == 0; });
    });
}

void Engine::cron_loop() {
    end_orphaned_cron_runs();
    auto last = floor<minutes>(system_clock::now()) - minutes(1);
    while (!stopping()) {
        const auto minute = floor<minutes>(system_clock::now());
        if (minute > last) {
            cron_tick(common::SysMinutes(minute));
            last = minute;
        }
        auto wait = duration_cast<milliseconds>(minute + minutes(1) + milliseconds(20) -
                                                system_clock::now());
        sleep_unless_stopping(std::clamp(wait, milliseconds(10), milliseconds(60000)));
    }
}

void Engine::cron_tick(common::SysMinutes minute) {
    for (const auto& app : m_store->apps()) {
        auto row = m_store->production(app);
        if (!row || !row->cron || m_store->stopped(app))
            continue;
        auto config = common::parse_config(row->config, "deploy.toml");
        if (!config || config->cron.empty())
            continue;
        for (const auto& job : config->cron) {
            auto schedule = common::parse_cron_schedule(job.schedule);
            if (!schedule)
                continue;
            auto due = latest_due(*schedule, job.timezone, minute);
            if (!due)
                continue;
            const auto due_text = rfc3339(*due);
            auto claimed =
                db_write([&] { return m_store->claim_cron_due(app, job.name, due_text); });
            if (!claimed) {
                common::log_error("cron " + app + " " + job.name + ": " + claimed.error().message);
                continue;
            }
            if (!*claimed)
                continue; // handled already (before a restart)
            auto started = start_cron_run(app, *row, *config, job, due_text);
            if (started)
                continue;
            // The previous run still runs (or the agent is stopping): this due time is
            // skipped, and recorded so.
            const auto now = rfc3339(system_clock::now());
            const char* why =
                stopping() ? "the agent is stopping" : "the previous run is still running";
            std::ofstream log(m_options.data_dir.cron_log(app, job.name), std::ios::app);
            log << logs::stamp_now()
                << fmt::format("--- cron {}: due {} skipped at {}: {} ---\n", job.name, due_text,
                               now, why);
            CronRunRow skipped;
            skipped.started = skipped.finished = now;
            skipped.outcome = "skipped";
            skipped.release = row->id;
            if (auto recorded = m_store->record_cron_run(app, job.name, skipped); !recorded)
                common::log_error(recorded.error().message);
        }
    }
}

common::Status Engine::start_cron_run(const std::string& app, const ReleaseRow& row,
                                      const common::AppConfig& config, const common::CronJob& job,
                                      const std::string& due) {
    {
        std::lock_guard lock(m_cron_mutex);
        if (stopping())
            return make_error(ErrorKind::refused, "the agent is stopping");
        if (!m_cron_running.insert(job_key(app, job.name)).second)
            return make_error(ErrorKind::refused,
                              fmt::format("cron job {} of {} is running; try again when it has "
                                          "ended (deployctl cron ls shows it)",
                                          job.name, app));
    }
    std::thread([this, app, row, config, job, due] {
        cron_run(app, row, config, job, due);
        {
            std::lock_guard lock(m_cron_mutex);
            m_cron_running.erase(job_key(app, job.name));
        }
        m_cron_cv.notify_all();
    }).detach();
    return {};
}

void Engine::cron_run(const std::string& app, const ReleaseRow& row,
                      const common::AppConfig& config, const common::CronJob& job,
                      const std::string& due) {
    const auto log_path = m_options.data_dir.cron_log(app, job.name);
    std::error_code ec;
    std::filesystem::create_directories(log_path.parent_path(), ec);
    std::ofstream log(log_path, std::ios::app);
    const auto started = system_clock::now();
    CronRunRow record;
    record.started = rfc3339(started);
    record.release = row.id;
    log << logs::stamp_now()
        << fmt::format("--- cron {}: started {} ({}, release {}) ---\n", job.name, record.started,
                       due.empty() ? std::string("run now") : "due " + due, row.id)
        << std::flush;
    auto finish = [&](std::string outcome, std::int64_t status, const std::string& line) {
        const auto finished = system_clock::now();
        record.finished = rfc3339(finished);
        record.duration_ms = duration_cast<milliseconds>(finished - started).count();
        record.exit_status = status;
        record.outcome = std::move(outcome);
        log << logs::stamp_now()
            << fmt::format("--- cron {}: {} after {} ---\n", job.name, line,
                           common::format_duration(milliseconds(record.duration_ms)))
            << std::flush;
        if (auto recorded = m_store->record_cron_run(app, job.name, record); !recorded)
            common::log_error("cron " + app + " " + job.name + ": " + recorded.error().message);
    };

    auto env = m_env->for_release(app, {});
    if (!env)
        return finish("failed", -1, "could not start: " + env.error().message);
    secrets::Redactor redactor(env->secret_values);
    runtime::OneOffSpec spec;
    spec.release = {app, row.id};
    spec.release_dir = m_options.data_dir.release_dir(app, row.id);
    spec.config = &config;
    spec.env = env->run;
    spec.env["DEPLOYCTL_CRON_JOB"] = job.name;
    spec.env["DEPLOYCTL_CRON_DUE"] = due;
    spec.secret_names = env->secret_names;
    spec.argv = {"/bin/sh", "-c", job.command};
    spec.purpose = "cron";
    auto& runtime = runtime_for(app, row.id, config);
    auto plan = runtime.one_off(spec);
    for (auto& [name, value] : spec.env)
        secrets::wipe(value);
    if (!plan)
        return finish("failed", -1, "could not start: " + plan.error().message);
    runtime::StreamingCommand command;
    command.spawn = std::move(plan->spawn);
    command.timeout = job.timeout;
    command.kill_grace = k_build_kill_grace;
    command.cancel = &m_stopping;
    command.on_line = [&](std::string_view line) {
        log << logs::stamp_now() << redactor.apply(line) << '\n' << std::flush;
    };
    command.on_started = [&](pid_t pid) {
        const auto start = runtime::process_start_time(pid).value_or(0);
        if (auto recorded = m_store->set_cron_process(app, job.name, pid, start); !recorded)
            common::log_error(recorded.error().message);
    };
    auto result = runtime::run_streaming(command);
    if (auto cleared = m_store->set_cron_process(app, job.name, 0, 0); !cleared)
        common::log_error(cleared.error().message);
    for (auto& entry : command.spawn.env)
        secrets::wipe(entry);
    if (plan->cleanup)
        plan->cleanup();
    if (!result)
        return finish("failed", -1, "could not start: " + result.error().message);
    switch (result->outcome) {
    case runtime::Outcome::timed_out:
        return finish("timed_out", -1,
                      "timed out after " + common::format_duration(job.timeout) + ": killed");
    case runtime::Outcome::cancelled:
        return finish("failed", -1, "interrupted: the agent stopped");
    case runtime::Outcome::signaled:
        return finish("failed", -1, "killed by signal " + std::to_string(result->status));
    case runtime::Outcome::exited:
        break;
    }
    finish(result->status == 0 ? "ok" : "failed", result->status,
           "exited with status " + std::to_string(result->status));
}

void Engine::wait_cron_runs() {
    std::unique_lock lock(m_cron_mutex);
    m_cron_cv.wait(lock, [&] { return m_cron_running.empty(); });
}

common::Result<std::vector<CronJobInfo>> Engine::cron_jobs(const std::string& app) {
    TRY(known_app(app));
    std::vector<CronJobInfo> jobs;
    auto row = m_store->production(app);
    if (!row)
        return jobs;
    auto config = common::parse_config(row->config, "deploy.toml");
    if (!config)
        return config.error();
    std::map<std::string, CronRunRow> runs;
    for (auto& run : m_store->cron_jobs(app))
        runs[run.job] = run;
    const bool stopped = m_store->stopped(app);
    const auto now = common::SysMinutes(floor<minutes>(system_clock::now()));
    for (const auto& job : config->cron) {
        CronJobInfo info;
        info.name = job.name;
        info.schedule = job.schedule;
        info.timezone = job.timezone;
        info.command = job.command;
        if (!row->cron)
            info.inactive = "another host of the target runs it (the first one deployed to)";
        else if (stopped)
            info.inactive = "the app is stopped (deployctl start)";
        else if (auto schedule = common::parse_cron_schedule(job.schedule))
            if (auto next = common::next_cron_time(*schedule, job.timezone, now))
                info.next_run = rfc3339(*next);
        {
            std::lock_guard lock(m_cron_mutex);
            info.running = m_cron_running.count(job_key(app, job.name)) > 0;
        }
        if (auto it = runs.find(job.name); it != runs.end()) {
            info.last_started = it->second.started;
            info.last_finished = it->second.finished;
            info.last_exit = it->second.exit_status;
            info.last_duration_ms = it->second.duration_ms;
            info.last_outcome = it->second.outcome;
            info.last_release = it->second.release;
        }
        jobs.push_back(std::move(info));
    }
    return jobs;
}

common::Result<CronRunStarted> Engine::run_cron(const std::string& app, const std::string& name) {
    TRY_ASSIGN(auto row, production_of(app, "run a cron job of"));
    auto config = common::parse_config(row.config, "deploy.toml");
    if (!config)
        return config.error();
    const auto job = std::find_if(config->cron.begin(), config->cron.end(),
                                  [&](const common::CronJob& j) { return j.name == name; });
    if (job == config->cron.end()) {
        std::string names;
        for (const auto& j : config->cron)
            names += (names.empty() ? "" : ", ") + j.name;
        return make_error(
            ErrorKind::not_found,
            fmt::format("{} has no cron job named '{}' in release {} ({})", app, name, row.id,
                        names.empty() ? "its deploy.toml has no [[cron]]" : "its jobs: " + names));
    }
    if (m_store->stopped(app))
        return make_error(ErrorKind::refused,
                          fmt::format("{} is stopped: its cron jobs do not run (deployctl start "
                                      "{} first)",
                                      app, app));
    TRY(start_cron_run(app, row, *config, *job, ""));
    return CronRunStarted{name, row.id, m_options.data_dir.cron_log(app, name).string()};
}

} // namespace agent
