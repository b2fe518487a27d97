#pragma once
// Scale to zero ([deploy] idle_stop, docs/traffic.md): a request for a sleeping
// app is held and the app's name is sent, as one datagram, to the agent's
// wake socket (DATA_DIR/proxy/wake.sock, beside routes.json). The agent starts
// the app and publishes a table that routes it, which releases the held
// requests. Thread-safe: every worker shares one.
//
// On-demand TLS (--on-demand-tls) uses a second one: a handshake for a name
// no certificate covers sends the name to DATA_DIR/proxy/certificate.sock,
// and the agent decides whether to get a certificate for it.

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

    // `ask` and `meanwhile` word the warning when the agent cannot be told:
    // "cannot ask the agent to ASK NAME (SOCKET): REASON; MEANWHILE".
    explicit Waker(std::filesystem::path socket, std::string ask = "start",
                   std::string meanwhile = "its requests wait and are answered 503 when the "
                                           "wait ends");
    ~Waker();
    Waker(const Waker&) = delete;
    Waker& operator=(const Waker&) = delete;

    // Sends `app` to the agent unless it was sent within k_again. Never
    // blocks; a failure (no agent listening) is logged, at most once a minute.
    // False when the agent could not be told (now, or the last time within k_again).
    bool wake(const std::string& app);

  private:
    std::filesystem::path m_socket;
    std::string m_ask;
    std::string m_meanwhile;
    int m_fd = -1;
    std::mutex m_mutex;
    struct Sent {
        std::chrono::steady_clock::time_point when;
        bool ok = false;
    };
    std::map<std::string, Sent> m_sent;
    std::chrono::steady_clock::time_point m_logged{};
    // The names sent longer than k_again ago are forgotten now and then: the
    // names of on-demand TLS come from anyone.
    std::chrono::steady_clock::time_point m_pruned{};
};

} // namespace agent::proxy
