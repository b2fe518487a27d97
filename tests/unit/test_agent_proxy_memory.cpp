#include <agent/proxy/memory.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <memory>
#include <vector>

namespace {

// Resident pages of this process, in bytes (/proc/self/statm).
std::size_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * 4096;
}

// 300 blocks of 100 KiB (below glibc's mmap threshold: in the heap), each
// followed by a small block that stays, so the freed ones are holes that
// free() alone never gives back; every page written.
struct Holes {
    std::vector<std::unique_ptr<char[]>> kept;
    void make() {
        std::vector<std::unique_ptr<char[]>> freed;
        for (int i = 0; i < 300; ++i) {
            freed.emplace_back(new char[100 << 10]);
            std::fill_n(freed.back().get(), 100 << 10, 'x');
            kept.emplace_back(new char[64]);
        }
    }
};

} // namespace

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
TEST_CASE("trim_free_memory gives the heap's freed memory back to the system") {
    Holes holes;
    holes.make();
    const auto left = agent::proxy::trim_free_memory(1u << 30); // less than 1 GiB free
    CHECK(left.rss_before == 0);
    CHECK(left.rss_after == 0);
    const auto before = resident_bytes();
    const auto trimmed = agent::proxy::trim_free_memory(agent::proxy::k_trim_min_free);
    CHECK(trimmed.rss_before >= before - (1u << 20));
    CHECK(trimmed.rss_after + (20u << 20) < trimmed.rss_before); // ~29 MiB of holes given back
    CHECK(resident_bytes() + (20u << 20) < before);
}
#endif
