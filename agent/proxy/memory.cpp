#include <agent/proxy/memory.hpp>

#include <cstdio>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace agent::proxy {

namespace {
[[maybe_unused]] std::size_t resident_bytes() {
    std::FILE* statm = std::fopen("/proc/self/statm", "r");
    if (statm == nullptr)
        return 0;
    unsigned long size = 0, resident = 0;
    const int read = std::fscanf(statm, "%lu %lu", &size, &resident);
    std::fclose(statm);
    return read == 2 ? resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}
} // namespace

Trimmed trim_free_memory(std::size_t min_free) {
    Trimmed out;
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 33) && !defined(__SANITIZE_ADDRESS__)
    if (::mallinfo2().fordblks < min_free) // free chunks, in every arena
        return out;
    out.rss_before = resident_bytes();
    ::malloc_trim(0);
    out.rss_after = resident_bytes();
#else
    (void)min_free;
#endif
    return out;
}

std::size_t release_startup_pages() {
    std::FILE* smaps = std::fopen("/proc/self/smaps", "r");
    if (smaps == nullptr)
        return 0;
    struct Mapping {
        unsigned long start = 0, end = 0;
        bool candidate = false; // a read-only mapping of a file
        unsigned long rss_kb = 0, anonymous_kb = 0;
    };
    std::size_t released = 0;
    Mapping mapping;
    auto finish = [&] {
        // Only a mapping whose every resident page is the file's: dropping a
        // page of its own (copied on write) would lose what was written.
        if (mapping.candidate && mapping.anonymous_kb == 0 && mapping.rss_kb != 0 &&
            ::madvise(reinterpret_cast<void*>(mapping.start), mapping.end - mapping.start,
                      MADV_DONTNEED) == 0) {
            released += mapping.rss_kb << 10;
        }
        mapping = {};
    };
    char line[4096];
    while (std::fgets(line, sizeof line, smaps) != nullptr) {
        unsigned long start = 0, end = 0, inode = 0;
        char perms[5] = {};
        int path_at = 0;
        if (std::sscanf(line, "%lx-%lx %4s %*x %*x:%*x %lu %n", &start, &end, perms, &inode,
                        &path_at) == 4) {
            finish();
            mapping.start = start;
            mapping.end = end;
            mapping.candidate =
                inode != 0 && line[path_at] == '/' && perms[0] == 'r' && perms[1] != 'w';
        } else if (std::strncmp(line, "Rss:", 4) == 0) {
            std::sscanf(line + 4, "%lu", &mapping.rss_kb);
        } else if (std::strncmp(line, "Anonymous:", 10) == 0) {
            std::sscanf(line + 10, "%lu", &mapping.anonymous_kb);
        }
    }
    finish();
    std::fclose(smaps);
    return released;
}

} // namespace agent::proxy
