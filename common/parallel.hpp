#pragma once
// Many independent pieces of work (files to copy, blobs to hash) on a few threads.

#include <common/result.hpp>

#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

namespace common {

// How many threads `count` pieces of work are worth: one below `min_per_thread * 2`,
// else one per core, at most `max_threads`.
std::size_t worker_count(std::size_t count, std::size_t min_per_thread, std::size_t max_threads);

// Calls task(worker, index) for every index in [0, count) on `workers` threads (the calling
// one is worker 0), each taking the next index. The first error stops the handing out of
// indexes and is returned once every thread has finished its current piece.
Status parallel_for(std::size_t count, std::size_t workers,
                    const std::function<Status(std::size_t worker, std::size_t index)>& task);

// The [begin, end) runs of consecutive indexes in [0, count) that `together(i - 1, i)` keeps
// in one run, each at most `max_run` long: work handed out a run at a time (a folder's
// files to one thread, so that two threads seldom create files in one folder and wait on
// its lock).
std::vector<std::pair<std::size_t, std::size_t>>
runs(std::size_t count, std::size_t max_run,
     const std::function<bool(std::size_t previous, std::size_t index)>& together);

} // namespace common
