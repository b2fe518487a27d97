#include <agent/runtime/cpus.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using agent::runtime::usable_cpus;
using test::TempDir;

namespace {

void put(const fs::path& file, const std::string& text) {
    fs::create_directories(file.parent_path());
    REQUIRE(common::atomic_write_file(file, text).ok());
}

} // namespace

TEST_CASE("usable_cpus: the affinity mask when no cgroup sets a quota") {
    TempDir dir;
    CHECK(usable_cpus(8, "0::/\n", dir.path()) == 8);
    CHECK(usable_cpus(3, "", dir.path()) == 3);
    CHECK(usable_cpus(0, "", dir.path()) == 1); // never 0
    put(dir.path() / "cpu.max", "max 100000\n");
    CHECK(usable_cpus(8, "0::/\n", dir.path()) == 8);
}

TEST_CASE("usable_cpus: cgroup v2 cpu.max of the process's cgroup or a parent, rounded up") {
    TempDir dir;
    const fs::path root = dir.path();
    const std::string self = "0::/system.slice/deploy-agent.service\n";
    put(root / "system.slice/deploy-agent.service/cpu.max", "250000 100000\n"); // 2.5 cores
    CHECK(usable_cpus(8, self, root) == 3);
    CHECK(usable_cpus(2, self, root) == 2);                // the mask is lower
    put(root / "system.slice/cpu.max", "100000 100000\n"); // the parent: 1 core
    CHECK(usable_cpus(8, self, root) == 1);
    put(root / "system.slice/cpu.max", "max 100000\n");
    put(root / "system.slice/deploy-agent.service/cpu.max", "50000 100000\n"); // half a core
    CHECK(usable_cpus(8, self, root) == 1);
    put(root / "system.slice/deploy-agent.service/cpu.max", "nonsense\n"); // no bound
    CHECK(usable_cpus(8, self, root) == 8);
}

TEST_CASE("usable_cpus: cgroup v1 cpu.cfs_quota_us over cpu.cfs_period_us") {
    TempDir dir;
    const fs::path root = dir.path();
    // As Debian mounts v1: cpu,cpuacct (with a cpu link, left out here).
    const std::string self = "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n";
    put(root / "cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put(root / "cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    put(root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n");
    put(root / "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    CHECK(usable_cpus(16, self, root) == 3);
    put(root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
    CHECK(usable_cpus(16, self, root) == 16);
    // Mounted as cpu alone, the quota on a parent.
    TempDir other;
    put(other.path() / "cpu/docker/cpu.cfs_quota_us", "150000\n");
    put(other.path() / "cpu/docker/cpu.cfs_period_us", "100000\n");
    CHECK(usable_cpus(16, "2:cpu:/docker/abc\n", other.path()) == 2);
    // A line for other controllers only sets nothing.
    CHECK(usable_cpus(16, "2:memory:/docker/abc\n", other.path()) == 16);
}
