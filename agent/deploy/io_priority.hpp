#pragma once
// One thread's I/O priority, for the agent's work done ahead of time (the spare tree, the
// build cache's copy): ioprio_set(2), which glibc does not wrap.

#include <sys/syscall.h>
#include <unistd.h>

namespace agent {

enum class IoClass { best_effort = 2, idle = 3 };

// `level`: 0 (first) to 7 (last) within the best-effort class; 4 is the kernel's default.
inline void set_io_priority(int tid, IoClass io_class, int level = 4) {
    constexpr int who_process = 1, class_shift = 13;
    const int value =
        static_cast<int>(io_class) << class_shift | (io_class == IoClass::best_effort ? level : 0);
    (void)::syscall(SYS_ioprio_set, who_process, tid, value);
}

} // namespace agent
