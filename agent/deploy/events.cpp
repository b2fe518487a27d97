#include <agent/deploy/event_signal.hpp>
#include <agent/deploy/events.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <mutex>
#include <unistd.h>

namespace agent {

namespace event_signal {
namespace {
std::mutex g_mutex;
std::condition_variable g_written;
// Counts per group of files (a hash of the path): a follower is woken by its
// own release's events, not by every line of every build on the agent.
std::array<std::uint64_t, 64> g_counts{};

std::uint64_t& slot(const std::filesystem::path& event_log) {
    return g_counts[std::hash<std::string>{}(event_log.native()) % g_counts.size()];
}
} // namespace

std::uint64_t count(const std::filesystem::path& event_log) {
    std::lock_guard lock(g_mutex);
    return slot(event_log);
}

void announce(const std::filesystem::path& event_log) {
    {
        std::lock_guard lock(g_mutex);
        ++slot(event_log);
    }
    g_written.notify_all();
}

void wait_after(const std::filesystem::path& event_log, std::uint64_t seen,
                std::chrono::milliseconds timeout) {
    std::unique_lock lock(g_mutex);
    auto& counted = slot(event_log);
    g_written.wait_for(lock, timeout, [&] { return counted != seen; });
}
} // namespace event_signal

namespace {
std::string timestamp() {
    char buffer[32];
    return std::string(common::now_rfc3339(buffer));
}

std::string to_line(const nlohmann::json& event) {
    // Invalid UTF-8 in build output must not throw: replace it.
    return event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}
} // namespace

void EventLog::state(common::State state, std::string_view message) const {
    nlohmann::json event{{"event", "state"},
                         {"release", m_release},
                         {"state", common::to_string(state)},
                         {"ts", timestamp()}};
    if (!message.empty())
        event["message"] = redact(message);
    append(to_line(event));
}

void EventLog::log(std::string_view stream, std::string_view line) const {
    append(to_line({{"event", "log"},
                    {"release", m_release},
                    {"stream", stream},
                    {"line", redact(line)},
                    {"ts", timestamp()}}));
}

void EventLog::health(bool ok, int status, std::string_view message) const {
    append(to_line({{"event", "health"},
                    {"release", m_release},
                    {"ok", ok},
                    {"status", status},
                    {"message", redact(message)},
                    {"ts", timestamp()}}));
}

// An event that cannot be written is tried again a few times (each write of
// a whole line is one O_APPEND write: a failed one wrote nothing), then lost
// with an error in the agent's log: the release's fate never depends on it.
void EventLog::append(const std::string& line) const {
    constexpr int k_attempts = 3;
    std::error_code ec;
    std::filesystem::create_directories(m_file.parent_path(), ec);
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < k_attempts; ++attempt)
        fd = ::open(m_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        common::log_error("cannot open " + m_file.string() + ": " + common::os_error_text(errno) +
                          "; an event of " + m_release + " is lost");
        return;
    }
    std::size_t written = 0;
    for (int failures = 0; written < line.size();) {
        ssize_t n = ::write(fd, line.data() + written, line.size() - written);
        if (n > 0) {
            written += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (++failures < k_attempts)
            continue;
        common::log_error("cannot write " + m_file.string() + ": " +
                          (n < 0 ? common::os_error_text(errno) : std::string("nothing written")) +
                          "; an event of " + m_release + " is lost");
        if (written > 0) // never glue the next event to a partial line
            (void)!::write(fd, "\n", 1);
        break;
    }
    ::close(fd);
    event_signal::announce(m_file);
}

} // namespace agent
