#pragma once
// deployctl logs on several hosts: each host's stream of log events (read on
// a thread of its own) merged into one, in the order of the events' times
// ("ts"). An event without a time goes with the one before it from its host.
//
// Without following, an event is given out once every host still streaming
// has one waiting, so the merge is exact; memory stays bounded because a
// host's reader waits (push blocks) while `cap` of its events wait. When
// following, a host may stay quiet for hours: an event waits at most `hold`
// for the others, so lines that arrive further apart than that come in the
// order they arrive.

#include <common/result.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

namespace cli {

class LogMerge {
  public:
    // `hold` 0: wait for every host (not following).
    LogMerge(std::size_t sources, std::chrono::milliseconds hold, std::size_t cap = 10000);

    // From `source`'s reader thread. False once the merge no longer takes events (stop()).
    bool push(std::size_t source, nlohmann::json event);
    // The end of `source`'s stream, with why it ended.
    void end(std::size_t source, common::Status status);
    // Takes no more events: readers blocked in push return false.
    void stop();

    // Gives out the events in order, and each source's end after its last
    // event, until every source has ended (or `event` returns false).
    void run(const std::function<bool(std::size_t, const nlohmann::json&)>& event,
             const std::function<void(std::size_t, const common::Status&)>& ended);

  private:
    using Clock = std::chrono::steady_clock;
    struct Item {
        std::int64_t key; // the event's time, microseconds
        Clock::time_point arrived;
        nlohmann::json event;
    };
    struct Source {
        std::deque<Item> items;
        std::int64_t last_key = INT64_MIN;
        std::optional<common::Status> ended;
        bool reported = false;
    };

    std::vector<Source> m_sources;
    std::chrono::milliseconds m_hold;
    std::size_t m_cap;
    bool m_stopped = false;
    std::mutex m_mutex;
    std::condition_variable m_changed;
};

} // namespace cli
