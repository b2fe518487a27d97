#include <agent/proxy/memory.hpp>

#include <cstdio>
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

} // namespace agent::proxy
