#pragma once
// Workers accepting on one shared listening socket (the agent's socket, which
// every worker holds a copy of) share its connections by load. The kernel wakes
// every worker waiting on that socket for each new connection and the first to
// call accept() takes it, so one worker that happens to be awake can take a
// whole burst of keep-alive connections while the others sit idle. Each worker
// publishes how many connections it holds; one holding clearly more than the
// least loaded other worker leaves the next connection to the others for a
// moment (k_accept_yield_step, at most k_accept_yield_steps times in a row),
// then accepts anyway, so a wedged worker never stops connections from being
// accepted. Workers on their own SO_REUSEPORT sockets do not need it: the
// kernel spreads connections among those sockets itself.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>

namespace agent::proxy {

inline constexpr std::chrono::milliseconds k_accept_yield_step{1};
inline constexpr unsigned k_accept_yield_steps = 10;

class AcceptShare {
  public:
    explicit AcceptShare(std::size_t workers)
        : m_workers(workers), m_counts(std::make_unique<std::atomic<std::size_t>[]>(workers)) {}

    // Called from `worker`'s thread whenever its connection count changes.
    void set(std::size_t worker, std::size_t connections) {
        m_counts[worker].store(connections, std::memory_order_relaxed);
    }

    // Whether `worker` should leave the next connection to another worker:
    // it holds at least 2 more than the least loaded other one, and an eighth more.
    bool should_yield(std::size_t worker) const {
        if (m_workers < 2) {
            return false;
        }
        const std::size_t mine = m_counts[worker].load(std::memory_order_relaxed);
        std::size_t least = static_cast<std::size_t>(-1);
        for (std::size_t i = 0; i < m_workers; ++i) {
            if (i != worker) {
                const std::size_t theirs = m_counts[i].load(std::memory_order_relaxed);
                least = theirs < least ? theirs : least;
            }
        }
        return mine >= least + 2 + least / 8;
    }

  private:
    std::size_t m_workers;
    std::unique_ptr<std::atomic<std::size_t>[]> m_counts;
};

} // namespace agent::proxy
