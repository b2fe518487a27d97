#include <agent/proxy/memory.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace {

// Resident pages of this process, in bytes (/proc/self/statm).
[[maybe_unused]] std::size_t resident_bytes() {
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

namespace {

// A field of /proc/self/status, in KiB.
std::size_t status_kib(const std::string& field) {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind(field + ":", 0) == 0)
            return std::stoul(line.substr(field.size() + 1));
    }
    return 0;
}

struct Shape {
    virtual ~Shape() = default;
    virtual int sides() const = 0;
};
struct Square final : Shape {
    int sides() const override { return 4; }
};

} // namespace

TEST_CASE(
    "release_startup_pages unmaps clean file pages and keeps every page of the process's own") {
    // A private mapping of a file, written (its page copied on write) and then
    // made read-only, as the loader does with relocated data: dropping that
    // page would bring back the file's bytes.
    char path[] = "/tmp/deployctl-memory-XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::unlink(path);
    const std::string file_bytes(4096, 'f');
    REQUIRE(::write(fd, file_bytes.data(), file_bytes.size()) == 4096);
    auto* written =
        static_cast<char*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    REQUIRE(written != MAP_FAILED);
    std::fill_n(written, 4096, 'w');
    REQUIRE(::mprotect(written, 4096, PROT_READ) == 0);
    // A read-only mapping of the same file, only read: the page cache's page.
    auto* clean = static_cast<const char*>(::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fd, 0));
    REQUIRE(clean != MAP_FAILED);
    CHECK(clean[0] == 'f');

    const std::unique_ptr<Shape> shape = std::make_unique<Square>();
    const std::size_t file_before = status_kib("RssFile");
    const std::size_t anon_before = status_kib("RssAnon");
    const std::size_t released = agent::proxy::release_startup_pages();
    const std::size_t file_after = status_kib("RssFile");
    CHECK(released > (256u << 10)); // this binary's code and its libraries' at least
    CHECK(file_after + 256 < file_before);
    CHECK(status_kib("RssAnon") <= anon_before + 64);

    // Everything still reads as before: the written page, the file's, code
    // reached through relocated pointers (a virtual call, libstdc++).
    CHECK(std::count(written, written + 4096, 'w') == 4096);
    CHECK(std::count(clean, clean + 4096, 'f') == 4096);
    CHECK(shape->sides() == 4);
    CHECK(std::to_string(42) == "42");
    ::munmap(written, 4096);
    ::munmap(const_cast<char*>(clean), 4096);
    ::close(fd);
}
