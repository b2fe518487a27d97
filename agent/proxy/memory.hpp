#pragma once
// Gives the memory that connections left free in the heap back to the system.
// Each connection holds read and write buffers (and TLS's); once a load of
// many connections ends, glibc keeps their free chunks (a proxy of one worker
// stayed at 39 MB after 256 TLS connections closed, 14 MB once trimmed). The
// server calls it every 5 s.

#include <cstddef>

namespace agent::proxy {

struct Trimmed {
    std::size_t rss_before = 0; // bytes resident before and after the trim
    std::size_t rss_after = 0;
};

// Trims the heap (malloc_trim) when it holds at least `min_free` free bytes;
// what the process had resident before and after, or nothing when it did not
// trim (or has no glibc malloc: musl, sanitizers). Pages already given back
// cost little to trim again.
Trimmed trim_free_memory(std::size_t min_free);

constexpr std::size_t k_trim_min_free = 2u << 20;

// Drops this process's mappings of the read-only file pages it holds: the
// code and constants of the binary and its libraries that start-up touched
// (OpenSSL's provider set-up and certificate parsing, the option parser) and
// the neighbours the kernel mapped around each of them. The page cache keeps
// the pages; one used again is mapped back by a minor fault, so what stays
// resident is what serving uses (a proxy of one worker with a certificate:
// 10.8 MB resident after start-up, of which 8.9 MB such pages). A mapping
// holding a page of its own (relocated data made read-only, a breakpoint)
// is left alone. The number of bytes no longer resident.
std::size_t release_startup_pages();

} // namespace agent::proxy
