#pragma once
// Keeps deploy-proxy running: adopts the proxy named in DATA_DIR/proxy/proxy.pid
// if it is alive, else starts it in its own session (it outlives the agent).

#include <agent/paths.hpp>
#include <common/result.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <sys/types.h>

namespace agent {

class ProxySupervisor {
  public:
    ProxySupervisor(DataDir data_dir, std::string proxy_bin, std::string listen);
    ~ProxySupervisor();
    ProxySupervisor(const ProxySupervisor&) = delete;
    ProxySupervisor& operator=(const ProxySupervisor&) = delete;

    // false when no proxy binary was configured (tests): nothing to supervise.
    bool enabled() const { return !m_bin.empty(); }
    // Adopts a live proxy or starts one.
    common::Status ensure_running();
    // Asks the proxy to re-read routes.json.
    void reload();
    // Waits until the proxy reports a generation >= `generation` (true) or timeout.
    bool wait_applied(std::uint64_t generation, std::chrono::milliseconds timeout) const;

  private:
    bool alive_locked() const;
    bool adopt_locked();
    common::Status spawn_locked();
    // The proxy's listening socket, kept by the agent too: made here before the
    // first start, or taken from an adopted proxy (pidfd_getfd). -1 if neither
    // worked; the proxy then binds --listen itself.
    void take_socket_locked(pid_t adopted);

    DataDir m_data_dir;
    std::string m_bin;
    std::string m_listen;
    mutable std::mutex m_mutex;
    pid_t m_pid = 0;
    std::int64_t m_start = 0;
    std::chrono::steady_clock::time_point m_last_spawn{};
    int m_listen_fd = -1;
};

} // namespace agent
