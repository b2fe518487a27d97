#pragma once
// Scale to zero ([deploy] idle_stop, docs/traffic.md): a request for a sleeping
// app is held and the app's name is sent, as one datagram, to the agent's
// wake socket (DATA_DIR/proxy/wake.sock, beside routes.json). The agent starts
// the app and publishes a table that routes it, which releases the held
// requests. Thread-safe: every worker shares one.

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

namespace agent::proxy {

class Waker {
  public:
    // The same app is asked for again at most this often: a new request held
    // after it (or one held again when a table leaves the app asleep) asks again.
    static constexpr std::chrono::milliseconds k_again{200};

    explicit Waker(std::filesystem::path socket);
    ~Waker();
    Waker(const Waker&) = delete;
    Waker& operator=(const Waker&) = delete;

    // Sends `app` to the agent unless it was sent within k_again. Never
    // blocks; a failure (no agent listening) is logged, at most once a minute.
    void wake(const std::string& app);

  private:
    std::filesystem::path m_socket;
    int m_fd = -1;
    std::mutex m_mutex;
    std::map<std::string, std::chrono::steady_clock::time_point> m_sent;
    std::chrono::steady_clock::time_point m_logged{};
};

} // namespace agent::proxy
