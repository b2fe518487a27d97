#include <agent/runtime/cgroup.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fcntl.h>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace agent::runtime::cgroup {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::uint64_t k_cpu_period = 100000; // microseconds, the kernel's default
constexpr const char* k_agent_leaf = "deploy-agent";
const std::vector<std::string> k_controllers{"memory", "cpu", "pids"};

// Writes `value` to a cgroup file (an interface file, or a plain file of a fake tree).
common::Status write_value(const fs::path& file, const std::string& value) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return make_error(ErrorKind::io,
                          "cannot open " + file.string() + ": " + common::os_error_text(errno));
    ssize_t n = ::write(fd, value.data(), value.size());
    int error = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(value.size()))
        return make_error(ErrorKind::io, fmt::format("cannot write \"{}\" to {}: {}", value,
                                                     file.string(), common::os_error_text(error)));
    return {};
}

std::string read_text(const fs::path& file) {
    auto text = common::read_file(file);
    return text ? *text : std::string();
}

std::vector<int> read_pids(const fs::path& dir) {
    std::vector<int> out;
    std::istringstream in(read_text(dir / "cgroup.procs"));
    int pid = 0;
    while (in >> pid)
        out.push_back(pid);
    return out;
}

// `word` is one of the words of `text` ("+memory" in a fake tree's subtree_control counts).
bool has_word(const std::string& text, const std::string& word) {
    std::istringstream in(text);
    std::string w;
    while (in >> w)
        if (w == word || w == "+" + word)
            return true;
    return false;
}

// A v1 hierarchy of `controller` under root that we may create cgroups in.
bool v1_usable(const fs::path& dir) {
    std::error_code ec;
    return fs::exists(dir / "cgroup.procs", ec) && ::access(dir.c_str(), W_OK) == 0;
}

// v2: enables `controllers` for the children of `dir` (all in one write, or
// one by one when that fails); returns those enabled.
std::vector<std::string> enable_controllers(const fs::path& dir,
                                            const std::vector<std::string>& controllers) {
    const auto current = read_text(dir / "cgroup.subtree_control");
    std::vector<std::string> wanted;
    for (const auto& c : controllers)
        if (!has_word(current, c))
            wanted.push_back(c);
    if (wanted.empty())
        return controllers;
    std::string all;
    for (const auto& c : wanted)
        all += (all.empty() ? "+" : " +") + c;
    if (write_value(dir / "cgroup.subtree_control", all))
        return controllers;
    std::vector<std::string> enabled;
    for (const auto& c : controllers) {
        if (has_word(current, c)) {
            enabled.push_back(c);
            continue;
        }
        auto written = write_value(dir / "cgroup.subtree_control", "+" + c);
        if (written)
            enabled.push_back(c);
        else
            common::log_warn("cgroups: cannot enable " + c + " for " + dir.string() + ": " +
                             written.error().message);
    }
    return enabled;
}

// v2: mkdir -p of `relative` under `base`, enabling `controllers` in every
// folder that gets a child.
common::Status make_v2_path(const fs::path& base, const fs::path& relative,
                            const std::vector<std::string>& controllers) {
    fs::path dir = base;
    for (const auto& part : relative) {
        if (enable_controllers(dir, controllers).size() != controllers.size())
            return make_error(ErrorKind::io, "cannot enable the controllers of " + dir.string());
        dir /= part;
        std::error_code ec;
        fs::create_directory(dir, ec);
        if (ec)
            return make_error(ErrorKind::io,
                              "cannot create cgroup " + dir.string() + ": " + ec.message());
    }
    return {};
}

} // namespace

Limits run_limits(const common::AppConfig& config) {
    return {config.run.memory, config.run.cpus, config.run.pids};
}

Limits build_limits(const common::AppConfig& config) {
    Limits limits;
    limits.memory = config.build.memory;
    return limits;
}

std::string cgroup_name(const std::string& app, const std::string& release,
                        const std::string& process, const std::string& instance) {
    std::string name = app + "/" + release + "." + process;
    if (!instance.empty())
        name += "." + instance;
    return name;
}

std::uint64_t parse_oom_kills(std::string_view text) {
    std::istringstream in{std::string(text)};
    std::string key;
    std::uint64_t value = 0;
    while (in >> key) {
        if (!(in >> value)) {
            in.clear();
            std::string skip;
            std::getline(in, skip);
            continue;
        }
        if (key == "oom_kill")
            return value;
    }
    return 0;
}

std::string cpu_max(double cpus) {
    auto quota = static_cast<std::uint64_t>(std::llround(cpus * k_cpu_period));
    quota = std::max<std::uint64_t>(quota, 1000); // the kernel's smallest quota
    return fmt::format("{} {}", quota, k_cpu_period);
}

std::optional<std::string> v2_self_path(std::string_view proc_cgroup) {
    std::istringstream in{std::string(proc_cgroup)};
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("0::", 0) == 0) {
            auto path = line.substr(3);
            while (!path.empty() && path.front() == '/')
                path.erase(0, 1);
            return path;
        }
    return std::nullopt;
}

Cgroups Cgroups::open(Options options) {
    Cgroups out;
    out.m_root = options.root;
    std::error_code ec;
    if (fs::exists(options.root / "cgroup.controllers", ec)) {
        // v2, unified: the agent's group is beside its own cgroup.
        std::string self;
        if (options.self)
            self = *options.self;
        else if (auto own = v2_self_path(read_text("/proc/self/cgroup")))
            self = *own;
        const fs::path base = self.empty() ? options.root : options.root / self;
        if (::access(base.c_str(), W_OK) != 0)
            return out;
        std::vector<std::string> offered;
        const auto available = read_text(base / "cgroup.controllers");
        for (const auto& c : k_controllers)
            if (has_word(available, c))
                offered.push_back(c);
        if (offered.empty())
            return out;
        // Moving the agent and enabling the controllers wait for the first cgroup.
        out.m_v2 = std::make_shared<V2Setup>();
        out.m_v2->base = base;
        out.m_v2->move = !self.empty();
        out.m_v2->controllers = offered;
        out.m_version = Version::v2;
        out.m_missing.clear();
        for (const auto& c : k_controllers) {
            if (std::find(offered.begin(), offered.end(), c) == offered.end())
                out.m_missing.push_back(c);
            else
                (c == "memory" ? out.m_memory
                 : c == "cpu"  ? out.m_cpu
                               : out.m_pids) = base / options.group;
        }
        return out;
    }
    // v1: a hierarchy per controller, the agent's group at the top of each.
    out.m_missing.clear();
    for (const auto& c : k_controllers) {
        const fs::path hierarchy = options.root / c;
        if (!v1_usable(hierarchy)) {
            out.m_missing.push_back(c);
            continue;
        }
        (c == "memory" ? out.m_memory
         : c == "cpu"  ? out.m_cpu
                       : out.m_pids) = hierarchy / options.group;
        out.m_version = Version::v1;
    }
    return out;
}

fs::path Cgroups::base(const std::string& controller) const {
    return controller == "memory" ? m_memory : controller == "cpu" ? m_cpu : m_pids;
}

std::string Cgroups::unsupported(const Limits& limits, const std::string& what) const {
    std::vector<std::string> why;
    if (limits.memory && m_memory.empty())
        why.push_back(what + ".memory needs the memory controller");
    if (limits.cpus > 0 && m_cpu.empty())
        why.push_back(what + ".cpus needs the cpu controller");
    if (limits.pids > 0 && m_pids.empty())
        why.push_back(what + ".pids needs the pids controller");
    std::string out;
    for (const auto& w : why)
        out += (out.empty() ? "" : ", ") + w;
    return out;
}

std::string Cgroups::missing_note() const {
    if (m_missing.empty())
        return {};
    std::string names;
    for (const auto& c : m_missing)
        names += (names.empty() ? "" : ", ") + c;
    return fmt::format("cgroups: no writable {} controller under {}: the process engine cannot "
                       "apply [run]/[build] limits that need {}; deployments asking for them "
                       "are refused",
                       names, m_root.string(), m_missing.size() == 1 ? "it" : "them");
}

std::vector<fs::path> Cgroups::dirs(const std::string& name) const {
    std::vector<fs::path> out;
    for (const auto* base : {&m_memory, &m_cpu, &m_pids})
        if (!base->empty() && std::find(out.begin(), out.end(), *base / name) == out.end())
            out.push_back(*base / name);
    return out;
}

bool Cgroups::exists(const std::string& name) const {
    std::error_code ec;
    for (const auto& dir : dirs(name))
        if (fs::is_directory(dir, ec))
            return true;
    return false;
}

std::vector<fs::path> Cgroups::procs_files(const std::string& name) const {
    std::vector<fs::path> out;
    for (const auto& dir : dirs(name))
        out.push_back(dir / "cgroup.procs");
    return out;
}

// No internal processes: whatever runs in the agent's cgroup (the agent, apps an
// older agent started there) moves into a leaf of its own, then the controllers
// are enabled for the children. Once; its outcome is kept.
common::Status Cgroups::prepare_v2() const {
    std::lock_guard lock(m_v2->mutex);
    if (m_v2->done)
        return m_v2->outcome;
    m_v2->done = true;
    const fs::path& base = m_v2->base;
    if (m_v2->move && !read_pids(base).empty()) {
        const fs::path leaf = base / k_agent_leaf;
        std::error_code ec;
        fs::create_directory(leaf, ec);
        for (int pid : read_pids(base))
            if (auto moved = write_value(leaf / "cgroup.procs", std::to_string(pid)); !moved)
                common::log_warn("cgroups: " + moved.error().message);
    }
    if (enable_controllers(base, m_v2->controllers).size() != m_v2->controllers.size())
        m_v2->outcome = make_error(ErrorKind::io, "cannot enable the cgroup controllers of " +
                                                      base.string() + " (see the agent's log)");
    return m_v2->outcome;
}

common::Status Cgroups::create(const std::string& name, const Limits& limits) const {
    if (m_version == Version::none)
        return make_error(ErrorKind::internal, "no cgroups to create " + name + " in");
    if (m_v2)
        TRY(prepare_v2());
    if (auto why = unsupported(limits, "limit"); !why.empty())
        return make_error(ErrorKind::config, why);
    if (exists(name))
        remove(name);
    std::error_code ec;
    if (m_version == Version::v2) {
        std::vector<std::string> controllers;
        for (const auto& c : k_controllers)
            if (!base(c).empty())
                controllers.push_back(c);
        // The group's folder is made with the first cgroup in it.
        const fs::path group = m_memory.empty() ? (m_cpu.empty() ? m_pids : m_cpu) : m_memory;
        TRY(make_v2_path(group.parent_path(), group.filename() / name, controllers));
    } else {
        for (const auto& dir : dirs(name)) {
            fs::create_directories(dir, ec);
            if (ec)
                return make_error(ErrorKind::io,
                                  "cannot create cgroup " + dir.string() + ": " + ec.message());
        }
    }
    const bool v2 = m_version == Version::v2;
    if (limits.memory) {
        const fs::path dir = m_memory / name;
        const auto bytes = std::to_string(limits.memory);
        if (v2) {
            TRY(write_value(dir / "memory.max", bytes));
            // No swap beyond the limit; a kernel without swap accounting has no such file.
            (void)write_value(dir / "memory.swap.max", "0");
        } else {
            TRY(write_value(dir / "memory.limit_in_bytes", bytes));
            if (fs::exists(dir / "memory.memsw.limit_in_bytes", ec))
                TRY(write_value(dir / "memory.memsw.limit_in_bytes", bytes));
        }
    }
    if (limits.cpus > 0) {
        const fs::path dir = m_cpu / name;
        if (v2) {
            TRY(write_value(dir / "cpu.max", cpu_max(limits.cpus)));
        } else {
            const auto max = cpu_max(limits.cpus);
            TRY(write_value(dir / "cpu.cfs_period_us", std::to_string(k_cpu_period)));
            TRY(write_value(dir / "cpu.cfs_quota_us", max.substr(0, max.find(' '))));
        }
    }
    if (limits.pids > 0)
        TRY(write_value(m_pids / name / "pids.max", std::to_string(limits.pids)));
    return {};
}

std::vector<int> Cgroups::pids(const std::string& name) const {
    std::set<int> all;
    for (const auto& dir : dirs(name))
        for (int pid : read_pids(dir))
            all.insert(pid);
    return {all.begin(), all.end()};
}

std::uint64_t Cgroups::oom_kills(const std::string& name) const {
    if (m_memory.empty())
        return 0;
    const fs::path dir = m_memory / name;
    return parse_oom_kills(
        read_text(dir / (m_version == Version::v2 ? "memory.events" : "memory.oom_control")));
}

std::uint64_t Cgroups::memory_limit(const std::string& name) const {
    if (m_memory.empty())
        return 0;
    auto text = read_text(m_memory / name /
                          (m_version == Version::v2 ? "memory.max" : "memory.limit_in_bytes"));
    try {
        auto value = std::stoull(text);
        return value >= (1ull << 62) ? 0 : value; // v1's "unlimited" is a huge number
    } catch (const std::exception&) {
        return 0; // "max", or no file
    }
}

void Cgroups::remove(const std::string& name) const {
    using namespace std::chrono_literals;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
        auto left = pids(name);
        if (left.empty() || std::chrono::steady_clock::now() > deadline)
            break;
        for (int pid : left)
            if (pid > 0)
                ::kill(pid, SIGKILL);
        std::this_thread::sleep_for(20ms);
    }
    for (const auto& dir : dirs(name)) {
        std::error_code ec;
        if (!fs::exists(dir, ec))
            continue;
        if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
            // A fake tree's folder holds the files we wrote: a real cgroup's never.
            if (errno == ENOTEMPTY && !fs::exists(dir / "cgroup.controllers", ec) &&
                !fs::exists(dir / "tasks", ec)) {
                fs::remove_all(dir, ec);
            } else {
                common::log_warn("cgroups: cannot remove " + dir.string() + ": " +
                                 common::os_error_text(errno));
            }
        }
        ::rmdir(dir.parent_path().c_str()); // the app's folder, once empty
    }
}

std::vector<std::string> Cgroups::children(const std::string& dir) const {
    std::set<std::string> names;
    for (const auto& base : dirs(dir)) {
        std::error_code ec;
        for (fs::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec))
            if (it->is_directory(ec))
                names.insert(it->path().filename().string());
    }
    return {names.begin(), names.end()};
}

std::optional<std::string> Cgroups::of_process(int pid) const {
    const auto text = read_text("/proc/" + std::to_string(pid) + "/cgroup");
    std::istringstream in(text);
    std::string line;
    // The path of the first hierarchy we use, relative to its mount.
    const fs::path mine = !m_memory.empty() ? m_memory : !m_cpu.empty() ? m_cpu : m_pids;
    if (mine.empty())
        return std::nullopt;
    while (std::getline(in, line)) {
        auto first = line.find(':');
        auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos)
            continue;
        std::string controllers = line.substr(first + 1, second - first - 1);
        const std::string path = line.substr(second + 1);
        std::replace(controllers.begin(), controllers.end(), ',', ' ');
        const std::string want = !m_memory.empty() ? "memory" : !m_cpu.empty() ? "cpu" : "pids";
        const bool ours =
            m_version == Version::v2 ? controllers.empty() : has_word(controllers, want);
        if (!ours)
            continue;
        // The group's path inside the hierarchy ends with "/deployctl-ID".
        const std::string group = "/" + mine.filename().string() + "/";
        auto at = path.find(group);
        if (at == std::string::npos)
            return std::nullopt;
        return path.substr(at + group.size());
    }
    return std::nullopt;
}

std::vector<std::string> enter_argv(const std::vector<fs::path>& procs,
                                    std::vector<std::string> argv) {
    if (procs.empty())
        return argv;
    // $$ is the shell's pid, which exec keeps: the command starts inside.
    std::vector<std::string> out = {
        "/bin/sh", "-c",
        "for f; do shift; [ \"$f\" = -- ] && break; "
        "echo $$ > \"$f\" || { echo \"cannot enter cgroup $f\" >&2; exit 125; }; done; "
        "exec \"$@\"",
        "sh"};
    for (const auto& file : procs)
        out.push_back(file.string());
    out.push_back("--");
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
}

} // namespace agent::runtime::cgroup
