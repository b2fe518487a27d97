#include <agent/runtime/cpus.hpp>
#include <common/fs.hpp>
#include <common/number.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <sched.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace agent::runtime {
namespace {

namespace fs = std::filesystem;

std::optional<double> parse_number(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.remove_suffix(1);
    const auto value = common::parse_whole_number<long long>(text);
    if (!value)
        return std::nullopt;
    return static_cast<double>(*value);
}

// The cores one cgroup directory's quota allows; nullopt: no quota (or none readable).
std::optional<double> quota_of(const fs::path& dir, bool v2) {
    if (v2) { // cpu.max: "QUOTA PERIOD" or "max PERIOD"
        auto text = common::read_file(dir / "cpu.max");
        if (!text)
            return std::nullopt;
        std::istringstream in(*text);
        std::string words[2];
        if (!(in >> words[0] >> words[1]) || words[0] == "max")
            return std::nullopt;
        auto quota = parse_number(words[0]);
        auto period = parse_number(words[1]);
        if (!quota || !period || *quota <= 0 || *period <= 0)
            return std::nullopt;
        return *quota / *period;
    }
    auto quota_text = common::read_file(dir / "cpu.cfs_quota_us");
    auto period_text = common::read_file(dir / "cpu.cfs_period_us");
    if (!quota_text || !period_text)
        return std::nullopt;
    auto quota = parse_number(*quota_text); // -1: none
    auto period = parse_number(*period_text);
    if (!quota || !period || *quota <= 0 || *period <= 0)
        return std::nullopt;
    return *quota / *period;
}

// The smallest quota of `path` (relative to `mount`) and its parents.
std::optional<double> lowest_quota(const fs::path& mount, std::string_view path, bool v2) {
    std::optional<double> lowest;
    fs::path relative = fs::path(std::string(path)).relative_path();
    for (;;) {
        if (auto quota = quota_of(mount / relative, v2); quota && (!lowest || *quota < *lowest))
            lowest = quota;
        if (relative.empty())
            break;
        relative = relative.parent_path();
    }
    return lowest;
}

} // namespace

unsigned usable_cpus(unsigned affinity, std::string_view proc_cgroup, const fs::path& root) {
    std::optional<double> cores;
    auto lower = [&cores](std::optional<double> quota) {
        if (quota && (!cores || *quota < *cores))
            cores = quota;
    };
    std::istringstream lines{std::string(proc_cgroup)};
    for (std::string text; std::getline(lines, text);) {
        const std::string_view line = text;
        // "ID:CONTROLLERS:PATH"; v2 is "0::PATH"
        const auto first = line.find(':');
        const auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
        if (second == std::string_view::npos)
            continue;
        const std::string_view controllers = line.substr(first + 1, second - first - 1);
        const std::string_view path = line.substr(second + 1);
        if (controllers.empty()) {
            lower(lowest_quota(root, path, true));
            continue;
        }
        bool cpu = false;
        std::istringstream names{std::string(controllers)};
        for (std::string name; std::getline(names, name, ',');)
            cpu = cpu || name == "cpu";
        if (!cpu)
            continue;
        // Mounted as "cpu,cpuacct" (with a "cpu" link) or as "cpu" alone.
        for (const auto& mount : {root / std::string(controllers), root / "cpu"}) {
            if (fs::is_directory(mount)) {
                lower(lowest_quota(mount, path, false));
                break;
            }
        }
    }
    unsigned count = std::max(affinity, 1u);
    if (cores)
        count = std::min(count, static_cast<unsigned>(std::max(1.0, std::ceil(*cores - 1e-9))));
    return count;
}

unsigned usable_cpus(const fs::path& root) {
    unsigned affinity = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0)
        affinity = static_cast<unsigned>(CPU_COUNT(&set));
    if (affinity == 0)
        affinity = std::max(std::thread::hardware_concurrency(), 1u);
    auto self = common::read_file("/proc/self/cgroup");
    return usable_cpus(affinity, self ? *self : std::string(), root);
}

} // namespace agent::runtime
