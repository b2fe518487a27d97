// common/parallel.cpp: every index once, on the workers asked for, stopping at an error.

#include <common/parallel.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

TEST_CASE("parallel_for: every index once, each worker number in range") {
    constexpr std::size_t count = 10000;
    std::vector<std::atomic<int>> seen(count);
    std::mutex mutex;
    std::set<std::size_t> workers;
    auto done = common::parallel_for(count, 3, [&](std::size_t worker, std::size_t i) {
        ++seen[i];
        std::lock_guard lock(mutex);
        workers.insert(worker);
        return common::Status{};
    });
    REQUIRE(done);
    for (std::size_t i = 0; i < count; ++i)
        CHECK_MESSAGE(seen[i] == 1, "index ", i);
    for (auto worker : workers)
        CHECK(worker < 3);
}

TEST_CASE("parallel_for: the first error stops it and is returned") {
    std::atomic<std::size_t> calls{0};
    auto done = common::parallel_for(100000, 4, [&](std::size_t, std::size_t i) -> common::Status {
        ++calls;
        if (i == 10)
            return common::make_error(common::ErrorKind::io, "cannot write file 10");
        return {};
    });
    REQUIRE_FALSE(done);
    CHECK(done.error().message == "cannot write file 10");
    CHECK(calls < 100000); // what was left was not handed out
}

TEST_CASE("parallel_for: nothing to do, and one worker") {
    int calls = 0;
    CHECK(common::parallel_for(0, 4, [&](std::size_t, std::size_t) {
        ++calls;
        return common::Status{};
    }));
    CHECK(calls == 0);
    CHECK(common::parallel_for(5, 1, [&](std::size_t worker, std::size_t) {
        CHECK(worker == 0);
        ++calls;
        return common::Status{};
    }));
    CHECK(calls == 5);
    CHECK(common::worker_count(10, 32, 4) == 1);
    CHECK(common::worker_count(1000, 32, 4) >= 1);
    CHECK(common::worker_count(1000, 32, 4) <= 4);
}

TEST_CASE("runs: consecutive indexes kept together, each run at most max_run long") {
    using Runs = std::vector<std::pair<std::size_t, std::size_t>>;
    const std::vector<std::string> folders{"a", "a", "a", "b", "a", "c", "c", "c", "c", "c"};
    auto same = [&](std::size_t previous, std::size_t index) {
        return folders[previous] == folders[index];
    };
    CHECK(common::runs(folders.size(), 100, same) == Runs{{0, 3}, {3, 4}, {4, 5}, {5, 10}});
    // A long run is cut: c's five files as 2 + 2 + 1.
    CHECK(common::runs(folders.size(), 2, same) ==
          Runs{{0, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 7}, {7, 9}, {9, 10}});
    CHECK(common::runs(0, 4, same).empty());
    CHECK(common::runs(1, 4, same) == Runs{{0, 1}});
}
