#include <common/parallel.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace common {

std::size_t worker_count(std::size_t count, std::size_t min_per_thread, std::size_t max_threads) {
    if (count < 2 * min_per_thread)
        return 1;
    return std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, max_threads);
}

Status parallel_for(std::size_t count, std::size_t workers,
                    const std::function<Status(std::size_t worker, std::size_t index)>& task) {
    std::atomic<std::size_t> next{0};
    std::mutex mutex;
    std::optional<Error> failure;
    auto work = [&](std::size_t worker) {
        for (std::size_t i = next++; i < count; i = next++)
            if (auto done = task(worker, i); !done) {
                std::lock_guard lock(mutex);
                if (!failure)
                    failure = done.error();
                next = count;
            }
    };
    std::vector<std::thread> pool;
    for (std::size_t w = 1; w < std::max<std::size_t>(workers, 1); ++w)
        pool.emplace_back(work, w);
    work(0);
    for (auto& thread : pool)
        thread.join();
    if (failure)
        return *failure;
    return {};
}

std::vector<std::pair<std::size_t, std::size_t>>
runs(std::size_t count, std::size_t max_run,
     const std::function<bool(std::size_t previous, std::size_t index)>& together) {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (std::size_t begin = 0, i = 1; begin < count; ++i)
        if (i == count || i - begin >= max_run || !together(i - 1, i)) {
            out.emplace_back(begin, i);
            begin = i;
        }
    return out;
}

} // namespace common
