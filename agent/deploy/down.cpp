#include <agent/deploy/down.hpp>
#include <agent/paths.hpp>
#include <agent/runtime/engine_cli.hpp>
#include <agent/runtime/process.hpp>
#include <agent/store/store.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>
#include <vector>

namespace agent {

namespace fs = std::filesystem;

namespace {

constexpr std::chrono::milliseconds k_agent_grace{15000};
constexpr std::chrono::milliseconds k_grace{10000};

// SIGTERM to one process, SIGKILL after `grace`; true once it is gone.
bool terminate(pid_t pid, std::int64_t start, std::chrono::milliseconds grace) {
    if (!runtime::process_matches(pid, start))
        return false;
    ::kill(pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (runtime::process_matches(pid, start)) {
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid, SIGKILL);
            for (int i = 0; i < 100 && runtime::process_matches(pid, start); ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
}

// "PID" or "PID START" in a pid file; the start time read now when absent.
std::optional<std::pair<pid_t, std::int64_t>> read_pid_file(const fs::path& file) {
    auto text = common::read_file(file);
    if (!text)
        return std::nullopt;
    std::istringstream in(*text);
    long pid = 0;
    long long start = 0;
    if (!(in >> pid) || pid <= 1)
        return std::nullopt;
    if (!(in >> start)) {
        auto now = runtime::process_start_time(static_cast<pid_t>(pid));
        if (!now)
            return std::nullopt;
        start = *now;
    }
    return std::pair{static_cast<pid_t>(pid), static_cast<std::int64_t>(start)};
}

std::vector<std::string> read_cmdline(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::vector<std::string> argv;
    for (std::string arg; std::getline(in, arg, '\0');)
        argv.push_back(arg);
    return argv;
}

bool is_inside(const fs::path& path, const fs::path& root) {
    auto relative = path.lexically_relative(root);
    return !relative.empty() && *relative.begin() != "..";
}

// Processes whose working directory is under `root`.
std::vector<pid_t> processes_in(const fs::path& root) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
        const auto name = it->path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        const auto pid = static_cast<pid_t>(std::stol(name));
        if (pid == ::getpid())
            continue;
        std::error_code link;
        auto cwd = fs::read_symlink(it->path() / "cwd", link);
        if (!link && is_inside(cwd, root))
            out.push_back(pid);
    }
    return out;
}

} // namespace

int down(const DownOptions& options) {
    std::error_code ec;
    const DataDir data(fs::absolute(options.data_dir));
    if (!fs::exists(data.state_db(), ec)) {
        std::fprintf(stderr,
                     "deploy-agent down: %s has no state.db: it is no agent's data dir (give the "
                     "--data-dir of deploy-agent serve)\n",
                     data.root().c_str());
        return 2;
    }
    int stopped = 0;
    auto say = [&stopped](const std::string& what) {
        std::printf("stopped %s\n", what.c_str());
        ++stopped;
    };
    // The agent first: its supervisor would start again what is stopped below.
    if (auto agent = read_pid_file(data.agent_pid())) {
        auto argv0 = runtime::process_command(agent->first);
        if (argv0 && fs::path(*argv0).filename() == "deploy-agent" &&
            terminate(agent->first, agent->second, k_agent_grace))
            say(fmt::format("deploy-agent (pid {})", agent->first));
        fs::remove(data.agent_pid(), ec);
    }
    // Containers labelled with the agent's id: removed (their images stay).
    if (auto id = common::read_file(data.agent_id())) {
        std::string agent_id = *id;
        while (!agent_id.empty() && (agent_id.back() == '\n' || agent_id.back() == ' '))
            agent_id.pop_back();
        std::vector<std::string> engines;
        if (!options.engine_bin.empty())
            engines.push_back(options.engine_bin);
        else
            engines = {"docker", "podman"};
        for (const auto& engine : engines) {
            runtime::CliCall ps;
            ps.argv = {engine,    "ps",       "--all",
                       "--quiet", "--filter", "label=dev.deployctl.agent=" + agent_id};
            auto listed = runtime::run_cli(ps);
            if (!listed || !listed->ok())
                continue; // not installed, or not answering
            std::istringstream in(listed->output);
            for (std::string container; std::getline(in, container);) {
                if (container.empty())
                    continue;
                runtime::CliCall rm;
                rm.argv = {engine, "rm", "--force", container};
                rm.timeout = std::chrono::milliseconds(60000);
                auto removed = runtime::run_cli(rm);
                if (removed && removed->ok())
                    say(fmt::format("{} container {}", engine, container));
                else
                    std::fprintf(stderr, "deploy-agent down: cannot remove container %s: %s\n",
                                 container.c_str(),
                                 removed ? removed->last_line().c_str()
                                         : removed.error().message.c_str());
            }
        }
    }
    // App processes and builds recorded in state.db (each leads its session).
    std::set<pid_t> done;
    if (auto store = Store::open(data.state_db())) {
        for (const auto& row : (*store)->all_releases()) {
            if (row.pid <= 0 || !runtime::process_matches(row.pid, row.pid_start))
                continue;
            runtime::terminate_group(row.pid, k_grace);
            done.insert(row.pid);
            say(fmt::format("{} {} (pid {})", row.app, row.id, row.pid));
        }
        for (const auto& row : (*store)->all_processes()) { // [processes] other than web
            if (row.pid <= 0 || !runtime::process_matches(row.pid, row.pid_start))
                continue;
            runtime::terminate_group(row.pid, k_grace);
            done.insert(row.pid);
            say(fmt::format("{} {} {}.{} (pid {})", row.app, row.release, row.process, row.instance,
                            row.pid));
        }
    } else {
        std::fprintf(stderr, "deploy-agent down: %s\n", store.error().message.c_str());
    }
    // log-redact writers (in the app's logs dir), and what is left of the
    // apps' sessions (a child that left its process group).
    for (pid_t pid : processes_in(data.root())) {
        auto start = runtime::process_start_time(pid);
        if (!start || done.count(pid))
            continue;
        auto argv = read_cmdline(pid);
        const bool redactor = argv.size() > 1 && argv[1] == "log-redact" &&
                              fs::path(argv[0]).filename() == "deploy-agent";
        const pid_t session = ::getsid(pid);
        if (!redactor && !done.count(session))
            continue; // not the agent's: a shell in the data dir, say
        if (terminate(pid, *start, k_grace))
            say(fmt::format("{} (pid {})",
                            redactor       ? std::string("log-redact")
                            : argv.empty() ? std::string("process")
                                           : argv[0],
                            pid));
    }
    // The proxy last: it served the apps until they were gone.
    if (auto proxy = read_pid_file(data.proxy_pid())) {
        auto argv0 = runtime::process_command(proxy->first);
        if (argv0 && fs::path(*argv0).filename() == "deploy-proxy" &&
            terminate(proxy->first, proxy->second, k_grace))
            say(fmt::format("deploy-proxy (pid {})", proxy->first));
    }
    if (stopped == 0)
        std::printf("nothing runs on %s: no agent, proxy or app was running\n",
                    data.root().c_str());
    else
        std::printf("%s is down; deploy-agent serve --data-dir %s starts it and its apps again\n",
                    data.root().c_str(), options.data_dir.c_str());
    return 0;
}

} // namespace agent
