#pragma once
// Many independent pieces of work (files to copy, blobs to hash) on a few threads.

#include <common/result.hpp>

#include <cstddef>
#include <functional>

namespace common {

// How many threads `count` pieces of work are worth: one below `min_per_thread * 2`,
// else one per core, at most `max_threads`.
std::size_t worker_count(std::size_t count, std::size_t min_per_thread, std::size_t max_threads);

// Calls task(worker, index) for every index in [0, count) on `workers` threads (the calling
// one is worker 0), each taking the next index. The first error stops the handing out of
// indexes and is returned once every thread has finished its current piece.
Status parallel_for(std::size_t count, std::size_t workers,
                    const std::function<Status(std::size_t worker, std::size_t index)>& task);

} // namespace common
