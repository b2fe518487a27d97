// QUEUED -> BUILDING -> PROVISIONING: materialize, build, start, health check.
#include <agent/deploy/build_cache.hpp>
#include <agent/deploy/engine.hpp>
#include <agent/deploy/materialize.hpp>
#include <agent/logs/stamp.hpp>
#include <agent/runtime/command.hpp>
#include <agent/runtime/http_probe.hpp>
#include <agent/runtime/process.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/hash.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <thread>
#include <unistd.h>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;
using common::State;
using Clock = std::chrono::steady_clock;

namespace {
// "60s" for whole seconds (as deploy.toml usually writes it), else "1.5s", "2m05s".
std::string seconds_text(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0 && d.count() <= 600000)
        return std::to_string(d.count() / 1000) + "s";
    return common::format_duration(d);
}
} // namespace

bool Engine::advance(const std::string& app, const std::string& id, State from, State to,
                     const EventLog& events) {
    auto moved =
        db_write([&] { return m_store->transition(app, id, from, to, "deployment pipeline"); });
    if (!moved) {
        common::log_error("deployment " + app + " " + id + ": " + moved.error().message);
        // Never left QUEUED or BUILDING: a state that cannot be recorded fails the release.
        if (moved.error().kind == ErrorKind::io)
            fail(app, id, from,
                 "cannot record " + std::string(common::to_string(to)) +
                     " in state.db: " + moved.error().message,
                 events);
        return false;
    }
    events.state(to);
    return true;
}

void Engine::fail(const std::string& app, const std::string& id, State from,
                  const std::string& message, const EventLog& events) {
    const std::string redacted = events.redact(message);
    common::log_warn("deployment " + app + " " + id + " failed: " + redacted);
    auto moved = db_write([&] {
        return m_store->transition(app, id, from, State::failed, "deployment failed", redacted);
    });
    if (!moved)
        common::log_error("cannot mark " + app + " " + id + " FAILED: " + moved.error().message);
    events.state(State::failed, message);
}

void Engine::stop_process(const std::string& app, const std::string& id,
                          const common::AppConfig& config, const runtime::AppProcess& process) {
    runtime_for(app, id, config).stop({app, id}, process, k_stop_grace);
    if (auto cleared = db_write([&] { return m_store->clear_process(app, id); }); !cleared)
        common::log_error(cleared.error().message);
}

void Engine::run_deployment(const std::string& app, Job& job) {
    EventLog events(m_options.data_dir.event_log(app, job.id), job.id);
    BuildLinks links; // before the release is live (or failed), their notes before its state
    acquire_build_slot();
    const auto began = std::chrono::steady_clock::now();
    if (stopping()) {
        release_build_slot();
        count_deployment(app, false, std::chrono::steady_clock::now() - began);
        return fail(app, job.id, State::queued, "cancelled: the agent stopped", events);
    }
    bool moved = advance(app, job.id, State::queued, State::building, events);
    common::Status built;
    if (moved) {
        auto env = release_env(app, job.config, events);
        built = env ? build(app, job, events, *env, links) : common::Status(env.error());
    }
    release_build_slot();
    if (!moved)
        return;
    // Still BUILDING, but no build slot held: a long migration does not hold up the
    // builds of other apps.
    if (built)
        built = release_phase(app, job, events);
    // A failed release counts against deploy.keep like any other, so failed
    // deploys cannot pile up releases and images either.
    auto failed = [&](State from, const std::string& message) {
        links.wait();
        count_deployment(app, false, std::chrono::steady_clock::now() - began);
        fail(app, job.id, from, message, events);
        prune(app, job.config.deploy.keep);
    };
    if (!built) {
        links.wait(); // before its files may go
        return failed(State::building, free_failed_build(app, job.id, built.error().message));
    }
    if (!advance(app, job.id, State::building, State::provisioning, events))
        return;
    auto process = provision(app, job.id, job.config, events);
    links.wait();
    if (!process)
        return failed(State::provisioning, process.error().message);
    if (job.canary > 0) { // deploy --canary: a share of the traffic instead of the switch
        enter_canary(app, job, *process, events);
        count_deployment(app, true, std::chrono::steady_clock::now() - began);
        return;
    }
    auto previous = activate(app, job.id, State::provisioning, events);
    if (!previous) {
        stop_process(app, job.id, job.config, *process);
        stop_processes(app, job.id, job.config.deploy.stop_timeout);
        return failed(State::provisioning, previous.error().message);
    }
    runtime_for(app, job.id, job.config).serving({app, job.id});
    // Its web is live: its other processes start (or, without a web, those started for its
    // check now serve), then drain() stops the old ones.
    if (auto started = start_processes(app, job.id, job.config, events, Serving::all); !started)
        common::log_warn(app + " " + job.id + ": " + started.error().message +
                         "; the supervisor tries again");
    common::log_info("deployment " + app + " " + job.id + " is PRODUCTION");
    count_deployment(app, true, std::chrono::steady_clock::now() - began);
    if (!*previous)
        return prune(app, job.config.deploy.keep);
    auto old = m_store->get(app, **previous);
    // The drainer keeps its job through the drain and the standby window (minutes): not
    // the new release's manifest, 8 MB for a tree of 20,000 files, which it never reads.
    job.manifest = common::Manifest();
    job.previous = **previous;
    job.standby = job.config.deploy.standby;
    if (old)
        job.previous_process = {old->pid, old->pid_start};
    prune(app, job.config.deploy.keep);
    start_drain(app, std::move(job)); // off the deploy lock: the next deploy never waits
}

// A build that failed on a full disk (its output, or another app's, ate the
// reserve): the tree goes at once, not with the next prune, so the failure can
// be recorded and the next deploy finds room. Its logs stay.
std::string Engine::free_failed_build(const std::string& app, const std::string& id,
                                      std::string message) {
    if (m_options.disk.check(0, "a build"))
        return message;
    std::error_code ec;
    fs::remove_all(m_options.data_dir.release_dir(app, id), ec);
    if (ec) {
        common::log_warn("cannot remove the failed build " + app + " " + id + ": " + ec.message());
        return message;
    }
    common::log_info("removed the files of " + app + " " + id +
                     ": its build failed on a full disk");
    return message + "; the disk is full, so its files were removed to free the disk";
}

common::Result<secrets::ReleaseEnv>
Engine::release_env(const std::string& app, const common::AppConfig& config, EventLog& events) {
    auto env = m_env->for_release(app, config.build.secrets);
    if (env && !env->secret_values.empty())
        events.redact_with(env->redactor());
    return env;
}

common::Result<runtime::AppProcess> Engine::start_app(runtime::Runtime& runtime,
                                                      const std::string& app, const std::string& id,
                                                      const common::AppConfig& config, int port,
                                                      const std::string& process_name,
                                                      int instance) {
    if (auto kept = m_env->remember(app, id); !kept)
        return kept.error();
    auto env = m_env->for_release(app, {});
    if (!env)
        return env.error();
    runtime::AppLaunch launch;
    launch.app = app;
    launch.id = id;
    launch.release_dir = m_options.data_dir.release_dir(app, id);
    const bool web = process_name.empty() || process_name == "web";
    launch.log_file = web ? m_options.data_dir.app_log(app, id)
                          : m_options.data_dir.process_log(app, id, process_name);
    launch.config = &config;
    launch.port = port;
    if (!process_name.empty()) {
        launch.process = process_name;
        launch.instance = instance;
        if (!web)
            launch.command = config.processes.at(process_name);
    }
    launch.env = env->run;
    launch.secret_names = env->secret_names;
    launch.redact = env->secret_values;
    auto process = runtime.start(launch);
    for (auto& [name, value] : launch.env)
        secrets::wipe(value);
    for (auto& value : launch.redact)
        secrets::wipe(value);
    return process;
}

namespace {
// The digest of what a build depends on (docs/build-cache.md): the engine, the tree, the
// build settings, the build's environment (values as digests: secrets are never stored)
// and what the engine adds (a Dockerfile's base images).
std::string build_key(const std::string& engine, const common::Manifest& manifest,
                      const common::AppConfig& config,
                      const std::map<std::string, std::string>& build_env,
                      const std::string& engine_inputs) {
    nlohmann::json inputs;
    inputs["engine"] = engine;
    inputs["tree"] = manifest.digest();
    inputs["command"] = config.build.command;
    inputs["dockerfile"] = config.build.dockerfile;
    inputs["args"] = config.build.args;
    auto env = config.env;
    for (const auto& [key, value] : build_env)
        env[key] = value;
    auto& digests = inputs["env"] = nlohmann::json::object();
    for (const auto& [key, value] : env)
        digests[key] = common::sha256_hex(value);
    inputs["engine_inputs"] = engine_inputs;
    return common::sha256_hex(inputs.dump());
}
} // namespace

// The newest other release of `app` whose build had inputs `key`.
std::optional<std::string> Engine::built_before(const std::string& app, const std::string& id,
                                                const std::string& key) {
    for (const auto& row : m_store->releases(app))
        if (row.id != id && !row.build_key.empty() && row.build_key == key)
            return row.id;
    return std::nullopt;
}

void Engine::drop_unused_builds(const std::string& app) {
    BuildCache cache(m_options.data_dir.build_cache(app));
    auto held = cache.lock(false);
    if (!held)
        return; // a build uses the cache: the next prune drops them
    std::set<std::string> keys;
    for (const auto& row : m_store->releases(app))
        if (!row.build_key.empty())
            keys.insert(row.build_key);
    cache.drop_builds_except(keys);
}

void Engine::keep_spare(const std::string& app, AppSlot& my) {
    if (!my.spare_wanted)
        return;
    {
        std::lock_guard lock(m_mutex);
        if (!my.queue.empty() || stopping())
            return; // the next deployment first
    }
    settle_spare(app, my, true); // one of an older tree
    const auto dir = spare_tree_dir(m_options.data_dir.app_dir(app) / "releases");
    auto wanted = std::move(*my.spare_wanted);
    my.spare_wanted.reset();
    // The disk guard as for a release's files: a spare is a convenience, never the cause of
    // a full disk (what is there is given up first).
    if (auto room = m_options.disk.check(my.spare ? 0 : wanted.total_bytes(), "a spare tree",
                                         wanted.entries.size());
        !room) {
        std::error_code ec;
        fs::remove_all(dir, ec);
        my.spare.reset();
        common::log_info(app + ": no spare tree kept: " + room.error().message);
        return;
    }
    // Written while the worker waits for the next deployment, which cancels it if it is
    // not whole by then.
    my.spare_writer = std::make_unique<SpareWriter>(std::move(wanted), m_blobs, dir,
                                                    std::exchange(my.spare, std::nullopt));
}

void Engine::copy_cache_ahead(const std::string& app, AppSlot& my) {
    const auto max = std::exchange(my.cache_copy, std::nullopt);
    if (!max)
        return;
    {
        std::lock_guard lock(m_mutex);
        if (!my.queue.empty() || stopping())
            return; // the next build copies what it restores, as it would wait for this
    }
    my.cache_copier.reset();
    // The build most likely reused next: the one serving (a redeploy of the same tree).
    std::string ready_key;
    if (auto production = m_store->production(app))
        ready_key = production->build_key;
    my.cache_copier = std::make_unique<BuildCacheCopier>(
        app, BuildCache(m_options.data_dir.build_cache(app)), *max,
        [this](std::uint64_t bytes, std::uint64_t files) {
            return m_options.disk.check(bytes, "a copy of the build cache made ahead", files);
        },
        std::move(ready_key));
}

bool Engine::settle_spare(const std::string& app, AppSlot& my, bool cancel) {
    if (!my.spare_writer)
        return false;
    auto outcome = my.spare_writer->finish(cancel);
    my.spare_writer.reset();
    if (outcome.spare)
        my.spare = std::move(outcome.spare);
    else if (!outcome.error.empty())
        common::log_warn(app + ": no spare tree kept: " + outcome.error);
    return outcome.cancelled;
}

common::Status Engine::build(const std::string& app, const Job& job, const EventLog& events,
                             const secrets::ReleaseEnv& env, BuildLinks& links) {
    auto dir = m_options.data_dir.release_dir(app, job.id);
    // The disk guard again: other deploys may have used the space since this
    // one was accepted.
    if (auto room = m_options.disk.check(job.manifest.total_bytes(), "the release's files",
                                         job.manifest.entries.size());
        !room)
        return make_error(ErrorKind::failed, room.error().message);
    // Which engine builds it is known once the tree is written (a Dockerfile at its root);
    // a tree that cannot have one is the process engine's, and may not even be written.
    const bool maybe_image = may_build_image(job.config, job.manifest);
    runtime::BuildSpec spec;
    spec.release = {app, job.id};
    spec.release_dir = dir;
    spec.config = &job.config;
    spec.env = env.build;
    spec.secrets = env.build_secrets;
    spec.cancel = &m_stopping;
    spec.no_cache = job.no_cache;
    spec.on_line = [&](std::string_view line) { events.log("build", line); };
    spec.on_note = [&](std::string_view note) { events.log("system", note); };
    spec.on_started = [&](pid_t pid) {
        auto start = runtime::process_start_time(pid).value_or(0);
        if (auto recorded = m_store->set_process(app, job.id, 0, pid, start); !recorded)
            common::log_error(recorded.error().message);
    };
    auto record_key = [&](const std::string& key) {
        if (auto recorded = m_store->set_build_key(app, job.id, key); !recorded)
            common::log_error(recorded.error().message);
    };
    auto reused = [&](const std::string& from, const std::string& key, bool made_ahead) {
        spec.on_note("build reused from " + from +
                     (made_ahead ? " (same inputs, its copy made ahead; deploy --rebuild builds)"
                                 : " (same inputs; deploy --rebuild builds)"));
        record_key(key);
        return common::Status();
    };
    BuildCache cache(m_options.data_dir.build_cache(app));
    std::string key;
    std::optional<BuildCacheLock> held;
    std::optional<std::string> reuse_from; // an earlier build of the same inputs
    AppSlot& my = slot(app);
    auto hold_cache = [&]() -> common::Status {
        key = build_key(m_process_runtime->name(), job.manifest, job.config, spec.env, "");
        if (!maybe_image && !(job.rebuild || job.no_cache))
            reuse_from = built_before(app, job.id, key);
        // The copy made ahead for this build: waited for, before the lock its last step
        // takes; cancelled when this build restores nothing (a reuse, --no-cache), not to
        // slow its own copies down. Another is made once the app's worker is idle again.
        if (my.cache_copier) {
            my.cache_copier->finish(job.no_cache || (reuse_from && cache.has_build(key)));
            my.cache_copier.reset();
        }
        my.cache_copy = job.config.build.cache_max;
        auto locked = cache.lock(true);
        if (!locked)
            return make_error(ErrorKind::failed, "build failed: " + locked.error().message);
        held.emplace(std::move(*locked));
        return {};
    };
    if (!maybe_image) { // an earlier build of the same inputs: its output copied, no tree written
        TRY(hold_cache());
        if (reuse_from && cache.has_build(key)) { // again, now that no clear can remove it
            bool made_ahead = false;
            if (auto copied = cache.reuse_build(key, dir, &made_ahead); copied)
                return reused(*reuse_from, key, made_ahead);
            else
                spec.on_note("cannot reuse the build of " + *reuse_from + " (" +
                             copied.error().message + "); building");
        }
    }
    const auto writing = Clock::now();
    // A spare not whole yet: finished at normal priority when half or more of it is
    // written (the rest costs less than the whole release), else cancelled.
    const bool hurry = my.spare_writer && my.spare_writer->mostly_written();
    if (settle_spare(app, my, !hurry))
        spec.on_note("the spare copy of the last tree was not written yet (this deployment came "
                     "right after the last): release files written from the store");
    Materialized tree;
    if (auto written = materialize(job.manifest, m_blobs, dir, &my.spare, &tree); !written)
        return make_error(ErrorKind::failed,
                          "cannot write the release tree: " + written.error().message);
    const auto wrote_now =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - writing);
    my.spare_wanted = job.manifest;
    if (tree.from_spare)
        spec.on_note(
            fmt::format("release files made from the spare copy of the last tree in {} ms: "
                        "{} written, {} removed, {} kept",
                        wrote_now.count(), tree.written, tree.removed, tree.kept));
    else
        my.full_write = wrote_now;
    // What writing the whole tree costs (a spare saves most of it; a reuse does not): this
    // write's time, or the last full write's when this one came from the spare.
    const auto wrote = std::max(my.full_write, wrote_now);
    if (auto room = m_options.disk.check(0, "a build"); !room)
        return make_error(ErrorKind::failed, room.error().message);
    auto& runtime = runtime_for(app, job.id, job.config);
    const bool image = &runtime == m_container_runtime.get();
    if (job.config.static_site && image)
        return make_error(ErrorKind::failed,
                          "a [static] site is served by deploy-proxy from the release's files and "
                          "cannot be built from a Dockerfile; remove the Dockerfile (and use "
                          "build.command) or remove [static]");
    if (!image && !held)
        TRY(hold_cache());
    if (image) {
        // An image build writes to the engine's storage, often another file system.
        if (const auto storage = runtime.storage_dir(); !storage.empty()) {
            const DiskGuard engine_disk(storage, m_options.disk.min_free());
            if (auto room = engine_disk.check(job.manifest.total_bytes(), "an image build"); !room)
                return make_error(ErrorKind::failed, room.error().message);
        }
        if (auto inputs = runtime.build_inputs(spec); inputs) {
            key = build_key(runtime.name(), job.manifest, job.config, spec.env, *inputs);
            if (auto from = built_before(app, job.id, key);
                from && !(job.rebuild || job.no_cache)) {
                if (auto tagged = runtime.reuse_build({app, *from}, spec.release);
                    tagged && *tagged)
                    return reused(*from, key, false);
            }
        }
    } else {
        if (auto restored = cache.restore(dir, job.config.build.cache, job.no_cache, spec.on_note);
            !restored) {
            spec.on_note("build cache not restored: " + restored.error().message);
            cache.discard();
        }
        spec.cache_dir = cache.build_dir();
    }
    const auto building = Clock::now();
    auto built = runtime.build(spec);
    const auto build_took = Clock::now() - building;
    if (auto cleared = m_store->clear_process(app, job.id); !cleared)
        common::log_error(cleared.error().message);
    if (!image && !built) {
        cache.discard(); // a failed build never writes the cache
        if (!job.config.build.cache.empty() || !job.config.build.command.empty())
            spec.on_note("build cache left as it was: the build failed");
    }
    if (!built)
        return built;
    if (!image) {
        // A reuse copies the kept tree, about what writing the release's tree cost: a
        // build quicker than that gains nothing from it, and keeping it would cost a walk
        // of every file (an 18,000-file tree built in 30 ms: 0.4 s on each deploy).
        const bool keep = build_took >= wrote;
        if (!keep && !job.config.build.command.empty())
            spec.on_note(fmt::format(
                "this build is not kept for reuse: it took {} ms, less than "
                "writing the release's files ({} ms); the same tree is built "
                "again",
                std::chrono::duration_cast<std::chrono::milliseconds>(build_took).count(),
                wrote.count()));
        // The release directory as the build left it, before anything runs there: the links
        // are made of what this walk saw, while the release starts (a file the app adds
        // is not in them, one it puts in the place of another fails them).
        // (No walk when there is nothing to link: $CACHE_DIR is saved by a rename.)
        common::Result<TreeSnapshot> tree = TreeSnapshot{dir, {}, {}, {}};
        if (keep || !job.config.build.cache.empty())
            tree = snapshot_tree(dir);
        if (!tree) {
            spec.on_note("build cache not saved: " + tree.error().message);
            cache.discard();
        } else {
            links.start([&my, &events, cache, held = std::move(held), tree = std::move(*tree), keep,
                         key, id = job.id, paths = job.config.build.cache,
                         max = job.config.build.cache_max]() mutable {
                auto note = [&](std::string_view line) { events.log("system", line); };
                // The build kept for reuse while the cache is saved: two sets of links at once.
                common::Status kept;
                std::thread keeping;
                if (keep)
                    keeping = std::thread([&] { kept = cache.keep_build(tree, key, id); });
                if (auto saved = cache.save(tree, paths, max, note); !saved)
                    note("build cache not saved: " + saved.error().message);
                if (keeping.joinable())
                    keeping.join();
                if (!kept)
                    note("this build is not kept for reuse: " + kept.error().message);
                held.reset(); // the next build of the app may use the cache
            });
        }
    }
    if (!key.empty())
        record_key(key);
    return built;
}

common::Status Engine::release_phase(const std::string& app, const Job& job,
                                     const EventLog& events) {
    const auto& release = job.config.release;
    if (release.command.empty())
        return {};
    if (!job.release_command) {
        events.log("system", "release command skipped on this host: it runs once per deployment, "
                             "on the target's first host");
        return {};
    }
    auto env = m_env->for_release(app, {});
    if (!env)
        return env.error();
    runtime::OneOffSpec spec;
    spec.release = {app, job.id};
    spec.release_dir = m_options.data_dir.release_dir(app, job.id);
    spec.config = &job.config;
    spec.env = env->run;
    spec.secret_names = env->secret_names;
    spec.argv = {"/bin/sh", "-c", release.command};
    spec.tty = false;
    spec.stdin_open = false;
    spec.purpose = "release";
    auto& runtime = runtime_for(app, job.id, job.config);
    auto plan = runtime.one_off(spec);
    for (auto& [name, value] : spec.env)
        secrets::wipe(value);
    if (!plan)
        return make_error(ErrorKind::failed,
                          "release command could not start: " + plan.error().message);
    events.log("system", "running release command: " + release.command +
                             (runtime.name() == "process"
                                  ? ""
                                  : " (in a one-off " + runtime.name() + " container)"));
    std::string last_line;
    runtime::StreamingCommand command;
    command.spawn = std::move(plan->spawn); // one copy of the secrets, wiped below
    command.timeout = release.timeout;
    command.kill_grace = k_build_kill_grace;
    command.cancel = &m_stopping;
    command.on_line = [&](std::string_view line) {
        if (line.find_first_not_of(" \t\r") != std::string_view::npos)
            last_line = line;
        events.log("release", line);
    };
    // An agent restart during the command finds it like an interrupted build.
    command.on_started = [&](pid_t pid) {
        auto start = runtime::process_start_time(pid).value_or(0);
        if (auto recorded = m_store->set_process(app, job.id, 0, pid, start); !recorded)
            common::log_error(recorded.error().message);
    };
    auto result = runtime::run_streaming(command);
    for (auto& entry : command.spawn.env)
        secrets::wipe(entry);
    if (plan->cleanup)
        plan->cleanup(); // a killed docker CLI leaves its container running
    if (auto cleared = m_store->clear_process(app, job.id); !cleared)
        common::log_error(cleared.error().message);
    if (!result)
        return make_error(ErrorKind::failed,
                          "release command could not start: " + result.error().message);
    auto with_last = [&](std::string message) {
        if (!last_line.empty())
            message += ": " + last_line;
        return message;
    };
    switch (result->outcome) {
    case runtime::Outcome::timed_out:
        return make_error(ErrorKind::failed, "release command timed out after " +
                                                 common::format_duration(release.timeout));
    case runtime::Outcome::cancelled:
        return make_error(ErrorKind::failed,
                          "interrupted: the agent stopped during the release command");
    case runtime::Outcome::signaled:
        return make_error(ErrorKind::failed, with_last("release command killed by signal " +
                                                       std::to_string(result->status)));
    case runtime::Outcome::exited:
        break;
    }
    if (result->status != 0)
        return make_error(ErrorKind::failed, with_last("release command exited with status " +
                                                       std::to_string(result->status)));
    events.log("system", "release command succeeded");
    return {};
}

common::Result<runtime::AppProcess> Engine::provision(const std::string& app, const std::string& id,
                                                      const common::AppConfig& config,
                                                      const EventLog& events) {
    if (config.static_site)
        return check_static_site(app, id, config, events);
    if (!config.has_web()) { // worker-only: its processes start now, nothing is routed
        if (auto up = check_processes(app, id, config, events); !up)
            return up.error();
        return runtime::AppProcess{};
    }
    if (instances_of(app, "web") == 0) { // deployctl scale web=0: its other processes only
        events.log("system", "web is scaled to 0 on this agent (deployctl scale): it is not "
                             "started and deploy-proxy answers 503 for " +
                                 app);
        if (!config.processes.empty())
            if (auto up = check_processes(app, id, config, events); !up)
                return up.error();
        return runtime::AppProcess{};
    }
    return launch_and_check(app, id, config, events);
}

fs::path Engine::static_root(const std::string& app, const std::string& id,
                             const common::AppConfig& config) const {
    auto root =
        (m_options.data_dir.release_dir(app, id) / config.static_site->dir).lexically_normal();
    return root.has_filename() ? root : root.parent_path(); // "dir/." → "dir"
}

std::string Engine::maintenance_page(const std::string& app, const std::string& id,
                                     const common::Result<common::AppConfig>& config) const {
    std::error_code ec;
    const auto release = fs::canonical(m_options.data_dir.release_dir(app, id), ec);
    if (ec)
        return {};
    std::vector<fs::path> candidates{release / "maintenance.html"};
    if (config && config->static_site)
        candidates.push_back(static_root(app, id, *config) / "maintenance.html");
    for (const auto& page : candidates) {
        // A link is followed only within the release; deploy-proxy opens the
        // file it leads to without following links.
        const auto real = fs::canonical(page, ec);
        if (ec || fs::status(real, ec).type() != fs::file_type::regular)
            continue;
        const auto inside = real.lexically_relative(release);
        if (!inside.empty() && *inside.begin() != "..")
            return real.string();
    }
    return {};
}

common::Result<runtime::AppProcess> Engine::check_static_site(const std::string& app,
                                                              const std::string& id,
                                                              const common::AppConfig& config,
                                                              const EventLog& events) {
    const std::string& dir = config.static_site->dir;
    std::error_code ec;
    auto release = fs::canonical(m_options.data_dir.release_dir(app, id), ec);
    auto root = ec ? fs::path() : fs::canonical(static_root(app, id, config), ec);
    if (ec || !fs::is_directory(root, ec))
        return make_error(ErrorKind::failed,
                          "static dir \"" + dir + "\" does not exist after the build");
    auto relative = root.lexically_relative(release);
    if (relative.empty() || *relative.begin() == "..")
        return make_error(ErrorKind::failed,
                          "static dir \"" + dir + "\" points outside the release");
    events.log("system", "static site: deploy-proxy serves " + dir +
                             (config.static_site->spa ? " (SPA fallback on)" : "") +
                             "; no process to start");
    return runtime::AppProcess{};
}

common::Result<runtime::AppProcess> Engine::launch_and_check(const std::string& app,
                                                             const std::string& id,
                                                             const common::AppConfig& config,
                                                             const EventLog& events) {
    auto& runtime = runtime_for(app, id, config);
    // Where this start's output begins in the app log (a rollback target's
    // log holds its earlier runs too).
    std::error_code ec;
    const auto log_file = m_options.data_dir.app_log(app, id);
    std::uintmax_t log_start = fs::exists(log_file, ec) ? fs::file_size(log_file, ec) : 0;
    std::uint64_t env_at_start = 0;
    {
        std::lock_guard lock(m_mutex);
        env_at_start = m_env_changes[app];
    }
    const auto env_fingerprint_at_start = env_fingerprint(app);
    const std::string what =
        runtime.name() == "process" ? config.run.command : runtime.name() + " container";
    // Another program can bind the port between its pick and the app's
    // listen(): the app then fails with "Address already in use". Seen as the
    // port held once the app is stopped, the start is tried again on another.
    constexpr int k_attempts = 3;
    common::Result<runtime::AppProcess> process = make_error(ErrorKind::internal, "not started");
    for (int attempt = 1;; ++attempt) {
        auto port = runtime::pick_free_port(m_options.app_ports);
        if (!port)
            return port.error();
        process = start_app(runtime, app, id, config, *port);
        if (!process)
            return process.error();
        events.log("system", "started " + what + " on port " + std::to_string(*port) + " (pid " +
                                 std::to_string(process->pid) + ")");
        auto recorded = db_write(
            [&] { return m_store->set_process(app, id, *port, process->pid, process->start); });
        if (!recorded) {
            stop_process(app, id, config, *process);
            return recorded.error();
        }
        auto healthy = wait_healthy(runtime, {app, id}, *process, *port, config.run.health, events);
        if (healthy)
            break;
        stop_process(app, id, config, *process);
        if (attempt < k_attempts && runtime::port_taken(*port)) {
            show_startup_output(app, id, ec ? 0 : log_start, events);
            log_start = fs::exists(log_file, ec) ? fs::file_size(log_file, ec) : 0;
            events.log("system", "port " + std::to_string(*port) +
                                     " was taken by another program before the app listened on "
                                     "it: starting the app again on another port");
            continue;
        }
        show_startup_output(app, id, ec ? 0 : log_start, events);
        return healthy.error();
    }
    // deployctl scale web=N: the other instances, each healthy before it is routed.
    if (auto more = start_web_instances(app, id, config, events); !more) {
        stop_process(app, id, config, *process);
        show_startup_output(app, id, ec ? 0 : log_start, events);
        return more.error();
    }
    {
        std::lock_guard lock(m_mutex);
        m_env_at_start[app + "/" + id] = env_at_start;
    }
    // Not synced: lost, a standby release is only cold after an agent restart.
    (void)common::write_unsynced(m_options.data_dir.release_env_at_start(app, id),
                                 env_fingerprint_at_start, false);
    return process;
}

namespace {

// The last `count` non-empty lines of `text`.
std::vector<std::string_view> last_lines(std::string_view text, std::size_t count,
                                         std::size_t& total) {
    std::vector<std::string_view> lines;
    total = 0;
    for (std::size_t at = 0; at < text.size();) {
        auto end = text.find('\n', at);
        if (end == std::string_view::npos)
            end = text.size();
        auto line = text.substr(at, end - at);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (!line.empty()) {
            ++total;
            lines.push_back(line);
            if (lines.size() > count)
                lines.erase(lines.begin());
        }
        at = end + 1;
    }
    return lines;
}

// Whether a process other than this one has `file` open: the app's writer
// (log-redact, `docker logs --follow`) until it has copied the last lines.
bool written_by_another_process(const fs::path& file) {
    std::error_code ec;
    const auto target = fs::canonical(file, ec);
    if (ec)
        return false;
    const std::string self = std::to_string(::getpid());
    for (const auto& proc : fs::directory_iterator("/proc", ec)) {
        const auto pid = proc.path().filename().string();
        if (pid == self || pid.find_first_not_of("0123456789") != std::string::npos)
            continue;
        std::error_code fd_ec;
        for (const auto& fd : fs::directory_iterator(proc.path() / "fd", fd_ec)) {
            std::error_code link_ec;
            if (fs::read_symlink(fd.path(), link_ec) == target)
                return true;
        }
    }
    return false;
}

} // namespace

void Engine::show_startup_output(const std::string& app, const std::string& id, std::uintmax_t from,
                                 const EventLog& events) {
    const auto file = m_options.data_dir.app_log(app, id);
    // The app is stopped, but its writer (log-redact, or the container's log
    // pump) may still be copying its last lines: wait (3 s at most) until no
    // other process has the file open, and it stopped growing.
    std::error_code ec;
    std::uintmax_t size = fs::file_size(file, ec);
    for (int quiet = 0, waited = 0; quiet < 2 && waited < 60; ++waited) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        auto now = fs::file_size(file, ec);
        quiet = !ec && now == size && !written_by_another_process(file) ? quiet + 1 : 0;
        size = ec ? 0 : now;
    }
    std::string text;
    if (auto content = common::read_file(file); content && content->size() > from) {
        // The tail is enough: at most k_startup_bytes of what this start wrote.
        auto begin = std::max<std::size_t>(
            from, content->size() > k_startup_bytes ? content->size() - k_startup_bytes : 0);
        text = content->substr(begin);
    }
    std::size_t total = 0;
    auto lines = last_lines(text, k_startup_lines, total);
    const std::string more = "more: deployctl logs " + id;
    if (lines.empty()) {
        events.log("system", "the app wrote no output before it failed; " + more);
        return;
    }
    // The writers redact already; this catches a secret set since they started.
    auto env = m_env->for_release(app, {});
    secrets::Redactor redactor(env ? env->secret_values : std::vector<std::string>{});
    events.log("system", lines.size() < total
                             ? "the app's last " + std::to_string(lines.size()) +
                                   " lines of output (of " + std::to_string(total) + "):"
                             : "the app's output:");
    for (auto line : lines)
        events.log("app", redactor.apply(logs::split_stamp(line).text));
    events.log("system", more);
}

common::Status Engine::wait_healthy(runtime::Runtime& runtime, const runtime::ReleaseRef& release,
                                    const runtime::AppProcess& process, int port,
                                    const common::HealthConfig& health, const EventLog& events) {
    auto deadline = Clock::now() + health.timeout;
    auto probe_timeout = std::clamp(health.interval, std::chrono::milliseconds(500),
                                    std::chrono::milliseconds(5000));
    runtime::ProbeResult last{0, "no answer yet"};
    // Probed every 10 ms for the first 3 s, then every health.interval: an app
    // that starts fast is routed fast (a wake-up after [deploy] idle_stop, a
    // deploy); a probe that finds nothing listening costs next to nothing.
    const auto fast_until = Clock::now() + std::chrono::seconds(3);
    for (bool first = true;; first = false) {
        if (auto exited = runtime.exited(release, process))
            return make_error(ErrorKind::failed, *exited);
        auto probe = runtime::http_probe(port, health.path, probe_timeout);
        if (first || probe.healthy() || probe.message != last.message)
            events.health(probe.healthy(), probe.status, health.path + ": " + probe.message);
        last = probe;
        if (probe.healthy())
            return {};
        const auto pause = Clock::now() < fast_until
                               ? std::min(std::chrono::milliseconds(10), health.interval)
                               : health.interval;
        if (Clock::now() + pause > deadline)
            return make_error(ErrorKind::failed, "health check failed: no healthy answer from " +
                                                     health.path + " within " +
                                                     seconds_text(health.timeout) +
                                                     " (last: " + last.message + ")");
        if (!sleep_unless_stopping(pause))
            return make_error(ErrorKind::failed, "interrupted: the agent stopped while the "
                                                 "release was starting");
    }
}

} // namespace agent
