#include <agent/runtime/process.hpp>
#include <common/log.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace agent::runtime {

using common::ErrorKind;
using common::make_error;

namespace {

std::string errno_text(int err) {
    return std::strerror(err);
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
    std::vector<char*> out;
    for (const auto& s : strings)
        out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

struct SpawnAttributes {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    SpawnAttributes() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnAttributes() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnAttributes(const SpawnAttributes&) = delete;
    SpawnAttributes& operator=(const SpawnAttributes&) = delete;
};

void setup_attributes(SpawnAttributes& sa, const SpawnSpec& spec) {
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (spec.session == Session::new_session)
        flags |= POSIX_SPAWN_SETSID;
    posix_spawnattr_setflags(&sa.attr, flags);
    sigset_t blocked, all;
    sigemptyset(&blocked);
    for (int signal : spec.blocked_signals)
        sigaddset(&blocked, signal);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&sa.attr, &blocked);
    posix_spawnattr_setsigdefault(&sa.attr, &all);
    if (!spec.terminal.empty()) {
        // After setsid (glibc runs the file actions last): the first terminal
        // a session leader opens without O_NOCTTY becomes its controlling one.
        posix_spawn_file_actions_addopen(&sa.actions, 0, spec.terminal.c_str(), O_RDWR, 0);
        posix_spawn_file_actions_adddup2(&sa.actions, 0, 1);
        posix_spawn_file_actions_adddup2(&sa.actions, 0, 2);
    } else {
        if (spec.stdin_fd >= 0)
            posix_spawn_file_actions_adddup2(&sa.actions, spec.stdin_fd, 0);
        else
            posix_spawn_file_actions_addopen(&sa.actions, 0, "/dev/null", O_RDONLY, 0);
        if (spec.stdout_fd >= 0)
            posix_spawn_file_actions_adddup2(&sa.actions, spec.stdout_fd, 1);
        else
            posix_spawn_file_actions_addopen(&sa.actions, 1, "/dev/null", O_WRONLY, 0);
        if (spec.stderr_fd >= 0)
            posix_spawn_file_actions_adddup2(&sa.actions, spec.stderr_fd, 2);
        else
            posix_spawn_file_actions_adddup2(&sa.actions, 1, 2);
    }
    if (!spec.cwd.empty())
        posix_spawn_file_actions_addchdir_np(&sa.actions, spec.cwd.c_str());
    // The agent's sockets and files must not leak into apps that outlive it:
    // only the ones it hands over, as fd 3, 4, ... (spawn() moves sources off
    // those numbers first, so no dup2 overwrites a source still to be copied).
    const int first = 3;
    for (std::size_t i = 0; i < spec.inherit_fds.size(); ++i)
        posix_spawn_file_actions_adddup2(&sa.actions, spec.inherit_fds[i],
                                         first + static_cast<int>(i));
    posix_spawn_file_actions_addclosefrom_np(&sa.actions,
                                             first + static_cast<int>(spec.inherit_fds.size()));
}

// Process group (field 5) of a live, non-zombie process.
std::optional<pid_t> live_process_group(const std::string& pid) {
    auto fields = live_stat_fields(pid);
    if (!fields || fields->size() < 3)
        return std::nullopt;
    return static_cast<pid_t>(std::atol((*fields)[2].c_str()));
}

// Whether any member of the group still runs. Zombies do not count: a leader
// re-parented to init may stay a zombie for a while after it exited.
bool group_exists(pid_t pgid) {
    if (kill(-pgid, 0) != 0 && errno != EPERM)
        return false;
    std::error_code ec;
    for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end;
         it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        if (live_process_group(name) == pgid)
            return true;
    }
    return false;
}

} // namespace

std::optional<std::vector<std::string>> live_stat_fields(const std::string& pid) {
    // A file that cannot be opened while the process exists (a descriptor
    // limit, memory) says nothing about the process: tried again, so that a
    // live app is not taken for dead (and failed, or started twice).
    std::ifstream in;
    for (int attempt = 0; attempt < 5; ++attempt) {
        in.open("/proc/" + pid + "/stat");
        if (in || (::kill(static_cast<pid_t>(std::atol(pid.c_str())), 0) != 0 && errno == ESRCH))
            break;
        in.clear();
    }
    std::string stat;
    if (!in || !std::getline(in, stat))
        return std::nullopt;
    auto close = stat.rfind(')');
    if (close == std::string::npos)
        return std::nullopt;
    std::istringstream stream(stat.substr(close + 1));
    std::vector<std::string> fields;
    for (std::string field; stream >> field;)
        fields.push_back(std::move(field));
    if (fields.empty() || fields[0] == "Z" || fields[0] == "X")
        return std::nullopt;
    return fields;
}

common::Result<pid_t> spawn(const SpawnSpec& original) {
    if (original.argv.empty())
        return make_error(ErrorKind::internal, "spawn: empty argv");
    // An inherited descriptor numbered 3..3+n would be overwritten by an
    // earlier dup2, or be its own target (and stay close-on-exec): copy it
    // above that range for the spawn.
    SpawnSpec spec = original;
    std::vector<int> moved;
    const int end = 3 + static_cast<int>(spec.inherit_fds.size());
    for (int& fd : spec.inherit_fds) {
        if (fd < end) {
            fd = ::fcntl(fd, F_DUPFD_CLOEXEC, end);
            if (fd < 0) {
                for (int copy : moved)
                    ::close(copy);
                return make_error(ErrorKind::io, "cannot pass a descriptor to " + spec.argv[0] +
                                                     ": " + errno_text(errno));
            }
            moved.push_back(fd);
        }
    }
    SpawnAttributes sa;
    setup_attributes(sa, spec);
    auto argv = c_strings(spec.argv);
    auto envp = c_strings(spec.env);
    pid_t pid = 0;
    int rc =
        posix_spawn(&pid, spec.argv[0].c_str(), &sa.actions, &sa.attr, argv.data(), envp.data());
    for (int copy : moved)
        ::close(copy);
    if (rc != 0)
        return make_error(ErrorKind::io, "cannot start " + spec.argv[0] + ": " + errno_text(rc));
    return pid;
}

std::vector<std::string> clean_environment(const std::filesystem::path& home,
                                           const std::map<std::string, std::string>& extra) {
    std::map<std::string, std::string> env{
        {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        {"HOME", home.string()},
        {"LANG", "C.UTF-8"},
    };
    for (const auto& [key, value] : extra)
        env[key] = value;
    std::vector<std::string> out;
    for (const auto& [key, value] : env)
        out.push_back(key + "=" + value);
    return out;
}

std::optional<std::int64_t> process_start_time(pid_t pid) {
    if (pid <= 0)
        return std::nullopt;
    auto fields = live_stat_fields(std::to_string(pid));
    if (!fields || fields->size() < 20) // starttime is field 22
        return std::nullopt;
    try {
        return std::stoll((*fields)[19]);
    } catch (const std::exception& e) {
        common::log_warn("cannot parse /proc/" + std::to_string(pid) + "/stat: " + e.what());
        return std::nullopt;
    }
}

bool process_matches(pid_t pid, std::int64_t start) {
    auto actual = process_start_time(pid);
    return actual && *actual == start;
}

std::optional<std::string> process_command(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string argv0;
    if (!in || !std::getline(in, argv0, '\0'))
        return std::nullopt;
    return argv0;
}

std::optional<std::string> reap_if_exited(pid_t pid) {
    int status = 0;
    if (pid <= 0 || waitpid(pid, &status, WNOHANG) != pid)
        return std::nullopt;
    if (WIFEXITED(status))
        return "status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "signal " + std::to_string(WTERMSIG(status));
    return "status unknown";
}

void terminate_group(pid_t pgid, std::chrono::milliseconds grace) {
    if (pgid <= 0)
        return;
    if (kill(-pgid, SIGTERM) != 0 && errno == ESRCH) {
        reap_if_exited(pgid);
        return;
    }
    auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
        reap_if_exited(pgid);
        if (!group_exists(pgid))
            return;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    common::log_warn("process group " + std::to_string(pgid) + " ignored SIGTERM; sending SIGKILL");
    kill(-pgid, SIGKILL);
    for (int i = 0; i < 40 && group_exists(pgid); ++i) {
        reap_if_exited(pgid);
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
}

} // namespace agent::runtime
