#pragma once
// How many CPUs this process may use, as runc and the Go and Java runtimes
// count them: the CPUs of its affinity mask, lowered by the CPU quota of its
// cgroup or any of its parents (v2 cpu.max, v1 cpu.cfs_quota_us over
// cpu.cfs_period_us), rounded up. deploy-agent starts one deploy-proxy worker
// per CPU it finds (docs/agent-config.md, proxy_threads).

#include <filesystem>
#include <string_view>

namespace agent::runtime {

// `affinity`: the count of the affinity mask; `proc_cgroup`: the text of
// /proc/self/cgroup; `root`: where the cgroup hierarchies are mounted. A file
// that cannot be read or parsed sets no bound. At least 1.
unsigned usable_cpus(unsigned affinity, std::string_view proc_cgroup,
                     const std::filesystem::path& root);
// Of this process (sched_getaffinity, /proc/self/cgroup).
unsigned usable_cpus(const std::filesystem::path& root);

} // namespace agent::runtime
