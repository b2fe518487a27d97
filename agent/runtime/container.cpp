// The `docker` and `podman` runtimes: images built from the release's
// Dockerfile, apps run as containers, all through the engine's CLI.
#include <agent/logs/rotating_file.hpp>
#include <agent/logs/stamp.hpp>
#include <agent/runtime/engine_cli.hpp>
#include <agent/runtime/http_probe.hpp>
#include <agent/runtime/process.hpp>
#include <agent/runtime/runtime.hpp>
#include <agent/secrets/redact.hpp>
#include <common/ascii.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string_view>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace agent::runtime {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::chrono::milliseconds k_quick{30000}; // inspect, rm, update, rmi
constexpr std::chrono::milliseconds k_run{120000};  // docker run (creates the container)
constexpr std::chrono::milliseconds k_answer{5000}; // docker version
// How long a stopped container's output may take to reach the app log.
constexpr std::chrono::milliseconds k_pump_drain{3000};
constexpr const char* k_label_agent = "dev.deployctl.agent";
constexpr const char* k_label_app = "dev.deployctl.app";
constexpr const char* k_label_release = "dev.deployctl.release";
// A one-off container (release phase, deployctl run): "release" or "run".
constexpr const char* k_label_one_off = "dev.deployctl.one-off";
// A container of a process other than web ([processes]): "worker.1".
constexpr const char* k_label_process = "dev.deployctl.process";
constexpr std::uint64_t k_podman_nproc = 4096;

// Eight hex digits telling one-off containers of a release apart.
std::string random_suffix() {
    static std::mutex mutex;
    static std::random_device device;
    std::lock_guard lock(mutex);
    return fmt::format("{:08x}", device());
}

// Output of `docker logs -f NAME`, appended line by line to the release's app
// log while the container runs. A pump ends with its container (or with the
// agent: its pipe breaks), and is started again on restart or re-adoption.
class LogPumps {
  public:
    static logs::Rotation default_rotation() {
        const common::LogSettings settings;
        return {settings.max_size, settings.keep};
    }

    explicit LogPumps(std::string binary) : m_binary(std::move(binary)) {}
    ~LogPumps() { stop_all(); }

    // `redactor`: the app's secret values, replaced in each line (nullptr: none).
    // The log rotates as `rotation` says (deploy.toml [logs]).
    void attach(const std::string& container, const fs::path& file, const std::string& since,
                std::shared_ptr<const secrets::Redactor> redactor,
                logs::Rotation rotation = default_rotation()) {
        stop(container);
        auto pump = std::make_unique<Pump>();
        CliCall call;
        // With the time each line was written: the log's stamps (logs/stamp.hpp).
        call.argv = {m_binary, "logs", "--follow", "--timestamps"};
        if (!since.empty())
            call.argv.insert(call.argv.end(), {"--since", since});
        call.argv.push_back(container);
        call.timeout = std::chrono::milliseconds(0);
        call.capture = false;
        call.cancel = &pump->cancel;
        std::error_code ec;
        fs::create_directories(file.parent_path(), ec);
        auto log = std::make_shared<logs::RotatingFile>(file, rotation);
        call.on_line = [log, redactor = std::move(redactor)](std::string_view line) {
            std::string text = logs::restamp(line, logs::now_micros());
            if (redactor)
                text = redactor->apply(text);
            text += '\n';
            if (auto written = log->write(text); !written)
                common::log_warn("cannot write an app log line: " + written.error().message);
        };
        pump->thread = std::thread([call = std::move(call), done = &pump->done] {
            if (auto ran = run_cli(call); !ran)
                common::log_warn("cannot follow container output: " + ran.error().message);
            *done = true;
        });
        std::lock_guard lock(m_mutex);
        m_pumps[container] = std::move(pump);
    }

    // `grace`: the container has stopped, so its pump ends by itself once it
    // has copied the last lines; wait that long for it before cutting it off.
    void stop(const std::string& container,
              std::chrono::milliseconds grace = std::chrono::milliseconds(0)) {
        std::unique_ptr<Pump> pump;
        {
            std::lock_guard lock(m_mutex);
            auto it = m_pumps.find(container);
            if (it == m_pumps.end())
                return;
            pump = std::move(it->second);
            m_pumps.erase(it);
        }
        auto deadline = std::chrono::steady_clock::now() + grace;
        while (!pump->done && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        pump->cancel = true;
        pump->thread.join();
    }

    void stop_all() {
        std::vector<std::string> names;
        {
            std::lock_guard lock(m_mutex);
            for (const auto& [name, pump] : m_pumps)
                names.push_back(name);
        }
        for (const auto& name : names)
            stop(name);
    }

  private:
    struct Pump {
        std::atomic<bool> cancel{false};
        std::atomic<bool> done{false};
        std::thread thread;
    };
    std::string m_binary;
    std::mutex m_mutex;
    std::map<std::string, std::unique_ptr<Pump>> m_pumps;
};

struct ContainerState {
    std::string status; // created, running, restarting, exited, dead ...
    bool running = false;
    bool restarting = false;
    bool oom_killed = false;
    int exit_code = 0;
    pid_t pid = 0;
    int restarts = 0;
    std::uint64_t memory = 0;
    std::string started_at;
};

// Rejects a Dockerfile path that is absolute, climbs out, or is not a regular
// file of the uploaded tree (symlinks are followed, but must stay inside it).
common::Result<fs::path> dockerfile_path(const fs::path& release_dir, const std::string& name) {
    fs::path rel = fs::path(name).lexically_normal();
    bool escapes = rel.is_absolute() || rel.empty() || *rel.begin() == "..";
    std::error_code ec;
    auto root = fs::canonical(release_dir, ec);
    auto file = escapes || ec ? fs::path() : fs::canonical(release_dir / rel, ec);
    auto within = file.empty() || ec ? fs::path() : file.lexically_relative(root);
    bool inside = !within.empty() && *within.begin() != "..";
    if (escapes || !inside || !fs::is_regular_file(fs::status(file, ec)))
        return make_error(ErrorKind::failed, "build failed: the Dockerfile \"" + name +
                                                 "\" is not a file of the uploaded tree");
    return file;
}

// The Dockerfile a release is built from: [build] dockerfile, or the tree's Dockerfile.
common::Result<fs::path> release_dockerfile(const BuildSpec& spec) {
    const auto& name = spec.config->build.dockerfile;
    return dockerfile_path(spec.release_dir, name.empty() ? "Dockerfile" : name);
}

// The image a build step produced: docker's " ---> 3f2a1b0c9d8e" and
// podman's "--> 3f2a1b0c9d8". Empty for any other line.
std::string layer_id(std::string_view line) {
    for (std::string_view arrow : {" ---> ", "--> "}) {
        if (line.substr(0, arrow.size()) != arrow)
            continue;
        auto id = line.substr(arrow.size());
        if (id.size() >= 9 && id.size() <= 64 &&
            id.find_first_not_of("0123456789abcdef") == std::string_view::npos)
            return std::string(id);
    }
    return {};
}

// The images a Dockerfile's FROM lines name, other than scratch and its own stages
// ("FROM --platform=linux/amd64 node:20 AS deps" names node:20).
std::vector<std::string> base_images(std::string_view dockerfile) {
    std::vector<std::string> images;
    std::set<std::string> stages;
    std::istringstream lines{std::string(dockerfile)};
    for (std::string line; std::getline(lines, line);) {
        std::istringstream words(line);
        std::string word;
        if (!(words >> word) || common::ascii_lower(word) != "from")
            continue;
        std::string image;
        while (words >> image && image.starts_with("--")) {
        }
        if (std::string as, stage; words >> as >> stage)
            stages.insert(common::ascii_lower(stage));
        if (!image.empty() && common::ascii_lower(image) != "scratch" &&
            !stages.count(common::ascii_lower(image)))
            images.push_back(image);
    }
    return images;
}

class ContainerRuntime final : public Runtime {
  public:
    // `socket`: the unix socket of the CLI's own daemon, for inspect ("": the CLI only).
    ContainerRuntime(ContainerOptions options, std::string version, std::string socket)
        : m_options(std::move(options)), m_version(std::move(version)), m_socket(std::move(socket)),
          m_pumps(m_options.binary) {}
    ~ContainerRuntime() override { m_pumps.stop_all(); }

    std::string name() const override { return m_options.engine; }
    std::string version() const override { return m_version; }

    common::Status build(const BuildSpec& spec) override {
        const auto& config = *spec.config;
        auto dockerfile = release_dockerfile(spec);
        if (!dockerfile)
            return dockerfile.error();
        if (!config.build.cache.empty())
            spec.on_note("build.cache is not used for container builds: the engine's layer "
                         "cache keeps the steps that did not change");
        if (!config.build.command.empty())
            spec.on_note("build.command is not run for container builds: the Dockerfile's "
                         "steps build the image");
        const std::string image = image_name(spec.release);
        spec.on_note("building image " + image + " with " + m_options.engine);
        std::vector<std::string> argv = {m_options.binary,     "build", "--force-rm", "-f",
                                         dockerfile->string(), "-t",    image};
        add_labels(argv, spec.release, Labels::image);
        if (config.build.memory)
            argv.insert(argv.end(), {"--memory", std::to_string(config.build.memory)});
        if (spec.no_cache)
            argv.push_back("--no-cache");
        if (!spec.secrets.empty())
            return make_error(
                ErrorKind::failed,
                "deploy.toml [build] secrets lists " + spec.secrets.front() +
                    ", but an image build cannot be given a secret safely: " + m_options.engine +
                    " build keeps --build-arg values in the image's history on "
                    "disk. Read the secret at run time instead, or build with "
                    "build.command on the process engine");
        for (const auto& [key, value] : config.build.args)
            argv.insert(argv.end(), {"--build-arg", key + "=" + value});
        argv.push_back(spec.release_dir.string());
        CliCall call;
        call.argv = std::move(argv);
        call.timeout = config.build.timeout;
        std::vector<std::string> layers; // images the build made, to remove if it fails
        int steps = 0, cached = 0;       // docker's "Step 2/5 :", podman's "STEP 2/5:"
        call.on_line = [&](std::string_view line) {
            if (auto id = layer_id(line); !id.empty())
                layers.push_back(std::move(id));
            if (line.rfind("Step ", 0) == 0 || line.rfind("STEP ", 0) == 0)
                ++steps;
            else if (line.find("Using cache") != std::string_view::npos)
                ++cached;
            spec.on_line(line);
        };
        call.on_started = spec.on_started;
        call.cancel = spec.cancel;
        auto result = run_cli(call);
        if (result && !result->ok() && !result->timed_out && !result->cancelled &&
            image_vanished_during_build(result->last_line())) {
            spec.on_note(m_options.engine + " build failed on an image removed while it looked "
                                            "through its build cache (by another build or a "
                                            "cleanup on this host): building again");
            remove_layers(layers);
            layers.clear();
            steps = cached = 0;
            result = run_cli(call);
        }
        if (!result || !result->ok())
            remove_layers(layers);
        if (!result)
            return make_error(ErrorKind::failed, "build failed: " + result.error().message);
        if (result->timed_out)
            return make_error(ErrorKind::failed, "build timed out after " +
                                                     common::format_duration(config.build.timeout));
        if (result->cancelled)
            return make_error(ErrorKind::failed, "interrupted: the agent stopped during the build");
        if (result->exit_code != 0) {
            std::string message = "build failed: " + m_options.engine +
                                  " build exited with status " + std::to_string(result->exit_code);
            if (auto last = result->last_line(); !last.empty())
                message += ": " + last;
            return make_error(ErrorKind::failed, message);
        }
        if (steps > 0)
            spec.on_note(
                fmt::format("image built: {} of {} steps from the build cache", cached, steps));
        return {};
    }

    common::Result<std::string> build_inputs(const BuildSpec& spec) override {
        auto dockerfile = release_dockerfile(spec);
        if (!dockerfile)
            return dockerfile.error();
        auto text = common::read_file(*dockerfile);
        if (!text)
            return text.error();
        std::string inputs;
        for (const auto& image : base_images(*text)) {
            auto id = call({"image", "inspect", "--format", "{{.Id}}", image}, k_quick);
            if (!id || !id->ok())
                return make_error(ErrorKind::failed,
                                  "base image " + image + " is not on the engine");
            inputs += image + "=" + id->last_line() + "\n";
        }
        return inputs;
    }

    common::Result<bool> reuse_build(const ReleaseRef& from, const ReleaseRef& to) override {
        auto tagged = call({"tag", image_name(from), image_name(to)}, k_quick);
        if (!tagged)
            return tagged.error();
        return tagged->ok();
    }

    // `docker run --rm` of the release's image under a name of its own, with
    // the app's environment and memory limit; cleanup removes it by force.
    common::Result<OneOffPlan> one_off(const OneOffSpec& spec) override {
        const auto& config = *spec.config;
        const std::string name =
            container_name(spec.release) + "-" + spec.purpose + "-" + random_suffix();
        std::vector<std::string> argv = {m_options.binary, "run", "--rm", "--name", name};
        add_labels(argv, spec.release, Labels::container);
        // --pull never: the image is the agent's own, built here; gone (pruned), the run
        // fails instead of asking a registry for an image of that name.
        argv.insert(argv.end(), {"--label", std::string(k_label_one_off) + "=" + spec.purpose,
                                 "--pull", "never", "--network", m_options.network});
        if (init_available())
            argv.push_back("--init");
        if (spec.stdin_open)
            argv.push_back("--interactive");
        if (spec.tty)
            argv.insert(argv.end(),
                        {"--tty", "--env", "TERM=" + (spec.term.empty() ? "xterm" : spec.term)});
        const auto cli_env = add_app_env(argv, config, spec.env, spec.secret_names);
        argv.insert(argv.end(), {"--env", "RELEASE=" + spec.release.id});
        add_memory_limit(argv, config);
        add_cpu_and_pids_limits(argv, config);
        if (m_options.engine == "podman")
            add_podman_limits(argv);
        argv.push_back(image_name(spec.release));
        argv.insert(argv.end(), spec.argv.begin(), spec.argv.end());
        OneOffPlan plan;
        plan.raw_terminal =
            spec.tty; // the container has the terminal: ours passes bytes as they are
        plan.spawn.argv = std::move(argv);
        plan.spawn.argv[0] = resolve_engine_binary(m_options.binary);
        if (plan.spawn.argv[0].empty())
            return make_error(ErrorKind::io, m_options.binary + " is not on PATH");
        plan.spawn.env = engine_environment_list(cli_env);
        plan.cleanup = [this, name] {
            auto removed = call({"rm", "--force", name}, k_quick);
            if (removed && !removed->ok() &&
                removed->output.find("No such container") == std::string::npos &&
                removed->output.find("no such container") == std::string::npos)
                common::log_warn("cannot remove one-off container " + name + ": " +
                                 removed->last_line());
        };
        return plan;
    }

    common::Result<AppProcess> start(const AppLaunch& launch) override {
        const ReleaseRef release{launch.app, launch.id, launch.process, launch.instance};
        const auto& config = *launch.config;
        const std::string name = container_name(release);
        m_pumps.stop(name);
        std::vector<std::string> argv = {m_options.binary, "run", "--detach", "--name", name};
        add_labels(argv, release, Labels::container);
        const std::string process_name = release.process + "." + std::to_string(release.instance);
        if (!release.process.empty())
            argv.insert(argv.end(), {"--label", std::string(k_label_process) + "=" + process_name});
        argv.insert(argv.end(),
                    {"--pull", "never", "--network", m_options.network, "--restart", "no"});
        if (init_available())
            argv.push_back("--init");
        CliCall run;
        if (launch.is_web()) {
            int container_port = launch.port;
            if (m_options.network != "host") {
                if (config.run.port > 0)
                    container_port = config.run.port;
                argv.insert(argv.end(), {"--publish", "127.0.0.1:" + std::to_string(launch.port) +
                                                          ":" + std::to_string(container_port)});
            }
            run.env = add_app_env(argv, config, launch.env, launch.secret_names, "PORT");
            argv.insert(argv.end(), {"--env", "PORT=" + std::to_string(container_port)});
            if (!release.process.empty()) // web.2 and on (deployctl scale)
                argv.insert(argv.end(),
                            {"--env", "PROCESS=" + process_name, "--env", "RELEASE=" + release.id});
        } else {
            run.env = add_app_env(argv, config, launch.env, launch.secret_names, "PROCESS");
            argv.insert(argv.end(),
                        {"--env", "PROCESS=" + process_name, "--env", "RELEASE=" + release.id});
        }
        add_memory_limit(argv, config);
        add_cpu_and_pids_limits(argv, config);
        argv.insert(argv.end(), {"--log-opt", "max-size=10m", "--log-opt", "max-file=3"});
        if (m_options.engine == "podman")
            add_podman_limits(argv);
        argv.push_back(image_name(release));
        const std::string& command = launch.is_web() ? config.run.command : launch.command;
        if (!command.empty())
            argv.insert(argv.end(), {"/bin/sh", "-c", command});
        run.argv = std::move(argv);
        run.timeout = k_run;
        auto ran = run_cli(run);
        if (ran && !ran->ok() && ran->output.find("already in use") != std::string::npos) {
            // A container of an earlier start of this release (a restart, a
            // rollback to it, an agent killed mid-start): replace it.
            best_effort({"rm", "--force", name}, k_quick);
            ran = run_cli(run);
        }
        if (!ran)
            return ran.error();
        if (!ran->ok()) {
            best_effort({"rm", "--force", name}, k_quick); // run may have created it
            return make_error(
                ErrorKind::failed,
                "cannot start the container: " +
                    secrets::Redactor(launch.redact).apply(failure_text(*ran, "run")));
        }
        auto state = inspect(name);
        if (!state) {
            best_effort({"rm", "--force", name}, k_quick);
            return state.error();
        }
        AppProcess process;
        if (state->pid > 0)
            process = {state->pid, process_start_time(state->pid).value_or(0)};
        m_pumps.attach(name, launch.log_file, "",
                       launch.redact.empty()
                           ? nullptr
                           : std::make_shared<const secrets::Redactor>(launch.redact),
                       {config.logs.max_size, config.logs.keep});
        return process;
    }

    std::optional<std::string> exited(const ReleaseRef& release,
                                      const AppProcess& process) override {
        if (alive(process))
            return std::nullopt; // a /proc check, no engine call per health probe
        auto state = inspect(container_name(release));
        if (!state)
            return "container disappeared while starting: " + state.error().message;
        if (state->oom_killed)
            return "container exceeded memory limit " +
                   (state->memory ? common::format_size(state->memory) : std::string("(none)")) +
                   " while starting";
        if (state->running)
            return std::nullopt; // its init may be gone already while the engine catches up
        if (state->restarting)
            return "container restarted while starting";
        return "container exited with status " + std::to_string(state->exit_code) +
               " while starting";
    }

    bool alive(const AppProcess& process) const override {
        return process.pid > 0 && process_matches(process.pid, process.start);
    }

    void stop(const ReleaseRef& release, const AppProcess&,
              std::chrono::milliseconds grace) override {
        const std::string name = container_name(release);
        auto seconds = std::max<long long>(1, (grace.count() + 999) / 1000);
        best_effort({"stop", "--time", std::to_string(seconds), name}, grace + k_quick);
        m_pumps.stop(name, k_pump_drain); // the last lines, then `rm` drops the engine's copy
        best_effort({"rm", "--force", name}, k_quick);
    }

    void serving(const ReleaseRef& release) override {
        if (m_options.engine != "docker")
            return; // podman 4 cannot change the policy of a running container
        best_effort({"update", "--restart", "unless-stopped", container_name(release)}, k_quick);
    }

    Recovery recover(const ReleaseRef& release, const fs::path& log_file) override {
        const std::string name = container_name(release);
        auto state = inspect(name);
        if (!state && state.error().kind == ErrorKind::not_found)
            return {Recovery::none, {}, "container was gone"};
        if (!state) { // the engine is slow or failing: never replace a container then
            common::log_warn(release.app + " " + release.id + ": " + state.error().message);
            return {Recovery::pending, {}, {}};
        }
        if (state->restarting)
            return {Recovery::pending, {}, {}};
        if (!state->running || state->pid <= 0)
            return {Recovery::none,
                    {},
                    "container exited with status " + std::to_string(state->exit_code)};
        auto start = process_start_time(state->pid);
        if (!start) // the engine has not noticed the exit yet
            return {Recovery::pending, {}, {}};
        AppProcess process{state->pid, *start};
        m_pumps.attach(name, log_file, state->started_at, redactor(release), rotation(release));
        std::string note = "container restarted by " + m_options.engine;
        if (state->restarts > 0)
            note += " (restart " + std::to_string(state->restarts) + ")";
        return {Recovery::running, process, note};
    }

    void adopt(const ReleaseRef& release, const AppProcess&, const fs::path& log_file) override {
        // Output written while no agent was pumping it: from the log file's
        // last write on (a line of that last second may show twice).
        std::string since;
        struct stat st {};
        if (::stat(log_file.c_str(), &st) == 0)
            since = std::to_string(st.st_mtim.tv_sec);
        m_pumps.attach(container_name(release), log_file, since, redactor(release),
                       rotation(release));
    }

    std::vector<ReleaseRef> instances() override {
        CliCall list;
        list.argv = {m_options.binary,
                     "ps",
                     "--all",
                     "--filter",
                     "label=" + std::string(k_label_agent) + "=" + m_options.agent_id,
                     "--format",
                     std::string("{{.Label \"") + k_label_app + "\"}}|{{.Label \"" +
                         k_label_release + "\"}}|{{.Label \"" + k_label_one_off +
                         "\"}}|{{.Label \"" + k_label_process + "\"}}"};
        list.timeout = k_quick;
        std::vector<ReleaseRef> refs;
        auto listed = run_cli(list);
        if (!listed || !listed->ok()) {
            common::log_warn("cannot list containers: " +
                             (listed ? failure_text(*listed, "ps") : listed.error().message));
            return refs;
        }
        std::istringstream lines(listed->output);
        std::string line;
        while (std::getline(lines, line)) {
            std::istringstream fields(line);
            std::string app, id, one_off, process;
            std::getline(fields, app, '|');
            std::getline(fields, id, '|');
            std::getline(fields, one_off, '|');
            std::getline(fields, process);
            // A one-off container is not the release's: its run ends it.
            if (app.empty() || id.empty() || !one_off.empty())
                continue;
            ReleaseRef ref{app, id};
            if (auto dot = process.rfind('.'); dot != std::string::npos) { // "worker.1"
                ref.process = process.substr(0, dot);
                ref.instance = std::atoi(process.c_str() + dot + 1);
            }
            refs.push_back(std::move(ref));
        }
        return refs;
    }

    std::size_t remove_one_offs(const std::string& purpose) override {
        CliCall list;
        list.argv = {
            m_options.binary,
            "ps",
            "--all",
            "--quiet",
            "--filter",
            "label=" + std::string(k_label_agent) + "=" + m_options.agent_id,
            "--filter",
            "label=" + std::string(k_label_one_off) + (purpose.empty() ? "" : "=" + purpose)};
        list.timeout = k_quick;
        auto listed = run_cli(list);
        if (!listed || !listed->ok()) {
            common::log_warn("cannot list one-off containers: " +
                             (listed ? failure_text(*listed, "ps") : listed.error().message));
            return 0;
        }
        std::istringstream lines(listed->output);
        std::size_t removed = 0;
        for (std::string id; lines >> id;) {
            if (id.size() < 12 || id.find_first_not_of("0123456789abcdef") != std::string::npos)
                continue; // not a container id
            best_effort({"rm", "--force", id}, k_quick);
            ++removed;
        }
        return removed;
    }

    void remove(const ReleaseRef& release) override {
        const std::string name = container_name(release);
        m_pumps.stop(name);
        best_effort({"rm", "--force", name}, k_quick);
        auto removed = call({"rmi", image_name(release)}, k_quick);
        if (removed && !removed->ok() &&
            removed->output.find("No such image") == std::string::npos &&
            removed->output.find("image not known") == std::string::npos)
            common::log_warn("cannot remove image " + image_name(release) + ": " +
                             removed->last_line());
    }

    void shutdown() override { m_pumps.stop_all(); }

    std::filesystem::path storage_dir() override {
        std::lock_guard lock(m_storage_mutex);
        if (!m_storage_asked) {
            m_storage_asked = true;
            auto info =
                call({"info", "--format",
                      m_options.engine == "podman" ? "{{.Store.GraphRoot}}" : "{{.DockerRootDir}}"},
                     k_quick);
            if (info && info->ok() && !info->last_line().empty() && info->last_line()[0] == '/')
                m_storage = info->last_line();
        }
        return m_storage;
    }

    std::optional<std::vector<StoredImage>> images() override {
        // Tagged and untagged ones (not -a: the layers under a tagged image are its).
        auto listed = call({"images", "--quiet", "--no-trunc", "--filter",
                            "label=" + std::string(k_label_agent) + "=" + m_options.agent_id},
                           k_quick);
        if (!listed || !listed->ok())
            return std::nullopt;
        std::vector<std::string> args = {
            "image", "inspect", "--format",
            std::string("{{.Id}}|{{index .Config.Labels \"") + k_label_app +
                "\"}}|{{range .RepoTags}}{{.}} {{end}}|{{.Created}}|{{.Size}}"};
        std::set<std::string> ids;
        std::istringstream lines(listed->output);
        for (std::string id; lines >> id;)
            if (id.rfind("sha256:", 0) == 0 ||
                id.find_first_not_of("0123456789abcdef") == std::string::npos)
                ids.insert(id);
        if (ids.empty())
            return std::vector<StoredImage>{};
        args.insert(args.end(), ids.begin(), ids.end());
        auto inspected = call(args, k_quick);
        if (!inspected || !inspected->ok())
            return std::nullopt;
        std::vector<StoredImage> out;
        std::istringstream rows(inspected->output);
        for (std::string row; std::getline(rows, row);) {
            std::istringstream fields(row);
            std::string id, app, tags, created, size;
            std::getline(fields, id, '|');
            std::getline(fields, app, '|');
            std::getline(fields, tags, '|');
            std::getline(fields, created, '|');
            std::getline(fields, size);
            if (id.empty() || app.empty() ||
                size.find_first_not_of("0123456789") != std::string::npos || size.empty())
                continue;
            StoredImage image;
            image.id = id;
            image.app = app;
            image.bytes = std::stoull(size);
            // "2026-12-04T10:00:00.123456789Z" (podman: "... +0000 UTC" too)
            // "2026-12-04T10:00:00.123456789Z"; podman: "2026-12-04 10:00:00.12 +0000 UTC".
            if (created.size() >= 19) {
                created = created.substr(0, 19) + "Z";
                created[10] = 'T';
            }
            image.created = common::parse_rfc3339(created).value_or(0) / 1000000;
            // Our tag, deployctl/APP:vN-AGENT8 (podman prefixes localhost/).
            const std::string ours = "deployctl/" + app + ":";
            std::istringstream tag_list(tags);
            for (std::string tag; tag_list >> tag;) {
                const auto at = tag.find(ours);
                const auto suffix = "-" + agent8();
                if (at == std::string::npos || tag.size() <= suffix.size() ||
                    tag.compare(tag.size() - suffix.size(), suffix.size(), suffix) != 0)
                    continue;
                image.release =
                    tag.substr(at + ours.size(), tag.size() - suffix.size() - at - ours.size());
            }
            out.push_back(std::move(image));
        }
        return out;
    }

    bool remove_image(const StoredImage& image) override {
        auto removed = call({"rmi", image.id}, k_quick);
        if (removed && removed->ok())
            return true;
        if (removed && !removed->timed_out)
            common::log_warn("cannot remove image " + image.id.substr(0, 19) + " of " + image.app +
                             ": " + removed->last_line());
        return false;
    }

  private:
    // For output followed again after a restart: the secrets it started with
    // and the app's current ones.
    std::shared_ptr<const secrets::Redactor> redactor(const ReleaseRef& release) const {
        if (!m_options.secret_values)
            return nullptr;
        auto values = m_options.secret_values(release);
        return values.empty() ? nullptr : std::make_shared<const secrets::Redactor>(values);
    }
    // The release's [logs] rotation, as its container's start used it.
    logs::Rotation rotation(const ReleaseRef& release) const {
        if (!m_options.log_settings)
            return LogPumps::default_rotation();
        const auto settings = m_options.log_settings(release);
        return {settings.max_size, settings.keep};
    }
    std::string agent8() const { return m_options.agent_id.substr(0, 8); }
    std::string image_name(const ReleaseRef& r) const {
        return "deployctl/" + r.app + ":" + r.id + "-" + agent8();
    }
    // The release's (web) container; a process other than web adds its name
    // and instance ("-worker-1").
    std::string container_name(const ReleaseRef& r) const override {
        std::string name = "deployctl-" + r.app + "-" + r.id + "-" + agent8();
        if (!r.process.empty())
            name += "-" + r.process + "-" + std::to_string(r.instance);
        return name;
    }

    // Containers carry agent, app and release. Images carry agent and app
    // only (the tag names the release): the builder turns each label into a
    // build step, and one that changes with every release would keep an
    // unchanged tree from ever being built entirely from cache.
    enum class Labels { image, container };
    void add_labels(std::vector<std::string>& argv, const ReleaseRef& r, Labels which) const {
        argv.insert(argv.end(), {"--label", std::string(k_label_agent) + "=" + m_options.agent_id,
                                 "--label", std::string(k_label_app) + "=" + r.app});
        if (which == Labels::container)
            argv.insert(argv.end(), {"--label", std::string(k_label_release) + "=" + r.id});
    }

    // A failed build leaves the layers it made as untagged images nothing
    // refers to. Newest first; an image that is still the parent of another
    // (a cached layer of a tagged image) is refused by the engine and stays.
    void remove_layers(const std::vector<std::string>& layers) {
        for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
            CliCall c;
            c.argv = {m_options.binary, "rmi", *it};
            c.timeout = k_quick;
            (void)run_cli(c);
        }
    }

    // The app's environment on a `docker run` argv: [env] (but `skip`, which the
    // caller sets itself) under the agent's variables. A secret goes by name
    // only: its value is returned, for the engine CLI's own environment.
    static std::map<std::string, std::string>
    add_app_env(std::vector<std::string>& argv, const common::AppConfig& config,
                const std::map<std::string, std::string>& env,
                const std::set<std::string>& secret_names, std::string_view skip = {}) {
        for (const auto& [key, value] : config.env)
            if (key != skip && !env.count(key))
                argv.insert(argv.end(), {"--env", key + "=" + value});
        std::map<std::string, std::string> cli_env;
        for (const auto& [key, value] : env) {
            if (!secret_names.count(key)) {
                argv.insert(argv.end(), {"--env", key + "=" + value});
                continue;
            }
            argv.insert(argv.end(), {"--env", key}); // the value: from the CLI's environment
            cli_env[key] = value;
        }
        return cli_env;
    }

    // [run] memory, without swap.
    static void add_memory_limit(std::vector<std::string>& argv, const common::AppConfig& config) {
        if (!config.run.memory)
            return;
        const auto bytes = std::to_string(config.run.memory);
        argv.insert(argv.end(), {"--memory", bytes, "--memory-swap", bytes});
    }

    // [run] cpus and pids.
    static void add_cpu_and_pids_limits(std::vector<std::string>& argv,
                                        const common::AppConfig& config) {
        if (config.run.cpus > 0)
            argv.insert(argv.end(), {"--cpus", fmt::format("{:g}", config.run.cpus)});
        if (config.run.pids > 0)
            argv.insert(argv.end(), {"--pids-limit", std::to_string(config.run.pids)});
    }

    // Podman sets nofile and nproc far above what an engine without
    // CAP_SYS_RESOURCE may grant; the app gets the agent's own file limit.
    static void add_podman_limits(std::vector<std::string>& argv) {
        rlimit limit{};
        std::uint64_t files = 1024;
        if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
            files = limit.rlim_cur;
        argv.insert(
            argv.end(),
            {"--ulimit", "nofile=" + std::to_string(files) + ":" + std::to_string(files),
             "--ulimit",
             "nproc=" + std::to_string(k_podman_nproc) + ":" + std::to_string(k_podman_nproc)});
    }

    bool init_available() const {
        if (m_options.engine == "docker")
            return true; // docker-init ships with the engine
        std::error_code ec;
        return fs::exists("/usr/libexec/podman/catatonit", ec) ||
               fs::exists("/usr/bin/catatonit", ec);
    }

    std::string failure_text(const CliResult& result, const std::string& verb) const {
        if (result.timed_out)
            return m_options.engine + " " + verb + " did not answer in time";
        auto last = result.last_line();
        return m_options.engine + " " + verb + " exited with status " +
               std::to_string(result.exit_code) + (last.empty() ? "" : ": " + last);
    }

    // An engine call whose failure is only logged (it already was, in call()).
    void best_effort(std::vector<std::string> args, std::chrono::milliseconds timeout) {
        auto result = call(args, timeout);
        if (result && !result->ok() && !result->timed_out)
            common::log_warn(describe_call(args) + ": " + result->last_line());
    }

    // A quick engine call; failures are logged and returned for the caller to judge.
    common::Result<CliResult> call(std::vector<std::string> args,
                                   std::chrono::milliseconds timeout) {
        CliCall c;
        c.argv = {m_options.binary};
        c.argv.insert(c.argv.end(), args.begin(), args.end());
        c.timeout = timeout;
        auto result = run_cli(c);
        if (!result)
            common::log_warn(describe_call(c.argv) + ": " + result.error().message);
        else if (result->timed_out)
            common::log_warn(describe_call(c.argv) + ": no answer within " +
                             common::format_duration(timeout));
        return result;
    }

    common::Result<ContainerState> inspect(const std::string& name) {
        if (!m_socket.empty()) {
            auto answer = unix_http_get(m_socket, "/containers/" + name + "/json", k_answer);
            if (answer && answer->status == 404)
                return make_error(ErrorKind::not_found, "No such container: " + name);
            if (answer && answer->status == 200)
                if (auto state = state_from_json(answer->body))
                    return *state;
            // Anything else: the CLI says what is wrong, as it did without the socket.
        }
        auto result = call({"inspect", "--type", "container", "--format",
                            "{{.State.Status}}|{{.State.Running}}|{{.State.Restarting}}|"
                            "{{.State.OOMKilled}}|{{.State.ExitCode}}|{{.State.Pid}}|"
                            "{{.RestartCount}}|{{.HostConfig.Memory}}|{{.State.StartedAt}}",
                            name},
                           k_quick);
        if (!result)
            return result.error();
        if (!result->ok()) {
            // docker: "No such container", podman: "no such container"
            bool unknown =
                !result->timed_out && (result->output.find("No such") != std::string::npos ||
                                       result->output.find("no such") != std::string::npos);
            return make_error(unknown ? ErrorKind::not_found : ErrorKind::io,
                              failure_text(*result, "inspect"));
        }
        std::vector<std::string> fields;
        std::istringstream in(result->last_line());
        for (std::string field; std::getline(in, field, '|');)
            fields.push_back(field);
        if (fields.size() != 9)
            return make_error(ErrorKind::internal,
                              "unexpected inspect output: " + result->last_line());
        ContainerState state;
        try {
            state.status = fields[0];
            state.running = fields[1] == "true";
            state.restarting = fields[2] == "true";
            state.oom_killed = fields[3] == "true";
            state.exit_code = std::stoi(fields[4]);
            state.pid = static_cast<pid_t>(std::stol(fields[5]));
            state.restarts = std::stoi(fields[6]);
            state.memory = std::stoull(fields[7]);
            state.started_at = fields[8];
        } catch (const std::exception&) {
            return make_error(ErrorKind::internal,
                              "unexpected inspect output: " + result->last_line());
        }
        return state;
    }

    // The engine API's answer to GET /containers/NAME/json: the fields inspect's
    // --format reads. nullopt when it is not of that shape.
    static std::optional<ContainerState> state_from_json(const std::string& body) {
        auto json = nlohmann::json::parse(body, nullptr, false);
        if (!json.is_object() || !json.contains("State") || !json["State"].is_object())
            return std::nullopt;
        try {
            const auto& s = json["State"];
            ContainerState state;
            state.status = s.value("Status", "");
            state.running = s.value("Running", false);
            state.restarting = s.value("Restarting", false);
            state.oom_killed = s.value("OOMKilled", false);
            state.exit_code = s.value("ExitCode", 0);
            state.pid = static_cast<pid_t>(s.value("Pid", 0L));
            state.started_at = s.value("StartedAt", "");
            state.restarts = json.value("RestartCount", 0);
            if (json.contains("HostConfig") && json["HostConfig"].is_object())
                state.memory = json["HostConfig"].value("Memory", std::uint64_t{0});
            return state;
        } catch (const nlohmann::json::exception&) {
            return std::nullopt;
        }
    }

    ContainerOptions m_options;
    std::string m_version;
    std::mutex m_storage_mutex;
    bool m_storage_asked = false;
    std::filesystem::path m_storage; // storage_dir(), asked once
    std::string m_socket;
    LogPumps m_pumps;
};

common::Result<std::string> engine_version(const std::string& engine, const std::string& binary,
                                           std::chrono::milliseconds timeout) {
    CliCall c;
    // podman answers locally (no daemon); docker's server version proves the daemon answers.
    c.argv = {binary, "version", "--format",
              engine == "podman" ? "{{.Client.Version}}" : "{{.Server.Version}}"};
    c.timeout = timeout;
    auto result = run_cli(c);
    if (!result)
        return result.error();
    if (result->timed_out)
        return make_error(ErrorKind::io,
                          engine + " did not answer within " + common::format_duration(timeout));
    auto version = result->last_line();
    if (result->exit_code != 0 || version.empty() || version.find(' ') != std::string::npos)
        return make_error(ErrorKind::io, engine + " does not answer: " +
                                             (version.empty() ? "no output" : version));
    return version;
}

// The unix socket of the daemon the docker CLI talks to, when the agent can reach
// it and it is that daemon (the same ID through both): "" otherwise, and the
// CLI does all.
std::string shared_daemon_socket(const std::string& binary) {
    const std::string path = docker_socket_path();
    if (path.empty())
        return {};
    auto info = unix_http_get(path, "/info", k_answer);
    if (!info || info->status != 200)
        return {};
    auto json = nlohmann::json::parse(info->body, nullptr, false);
    const std::string id = json.is_object() && json.contains("ID") && json["ID"].is_string()
                               ? json["ID"].get<std::string>()
                               : "";
    if (id.empty())
        return {};
    CliCall c;
    c.argv = {binary, "info", "--format", "{{.ID}}"};
    c.timeout = k_answer;
    auto cli = run_cli(c);
    if (!cli || !cli->ok() || cli->last_line() != id)
        return {};
    return path;
}

} // namespace

bool engine_answers(const std::string& binary, std::chrono::milliseconds timeout) {
    return static_cast<bool>(engine_version("docker", binary, timeout));
}

common::Result<std::unique_ptr<Runtime>> make_container_runtime(ContainerOptions options) {
    if (options.engine != "docker" && options.engine != "podman")
        return make_error(ErrorKind::usage, "unknown container engine " + options.engine);
    if (options.binary.empty())
        options.binary = options.engine;
    if (options.agent_id.size() < 8)
        return make_error(ErrorKind::internal, "container runtime needs the agent id");
    auto version = engine_version(options.engine, options.binary, k_answer);
    if (!version)
        return make_error(version.error().kind,
                          "--engine " + options.engine + ": " + version.error().message);
    std::string socket = options.engine == "docker" ? shared_daemon_socket(options.binary) : "";
    if (!socket.empty())
        common::log_info("docker: container states are read through " + socket +
                         ", the socket of the CLI's daemon");
    std::unique_ptr<Runtime> runtime = std::make_unique<ContainerRuntime>(
        std::move(options), std::move(*version), std::move(socket));
    return runtime;
}

bool wants_container(const common::AppConfig& config, const fs::path& release_dir) {
    if (!config.build.dockerfile.empty())
        return true;
    return dockerfile_path(release_dir, "Dockerfile").ok();
}

} // namespace agent::runtime
