#pragma once
// Keeps deploy-proxy running: adopts the proxy named in DATA_DIR/proxy/proxy.pid
// if it is alive, else starts it in its own session (it outlives the agent).
// An adopted proxy started with other settings (listen addresses, certificates)
// is replaced by one with the current settings, on the same sockets.

#include <agent/deploy/service.hpp>
#include <agent/paths.hpp>
#include <common/result.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace agent {

class ProxySupervisor {
  public:
    ProxySupervisor(DataDir data_dir, std::string proxy_bin, ProxySettings settings);
    ~ProxySupervisor();
    ProxySupervisor(const ProxySupervisor&) = delete;
    ProxySupervisor& operator=(const ProxySupervisor&) = delete;

    // false when no proxy binary was configured (tests): nothing to supervise.
    bool enabled() const { return !m_bin.empty(); }
    // Adopts a live proxy or starts one.
    common::Status ensure_running();
    // Asks the proxy to re-read routes.json (RoutePublisher waits for its answer).
    void reload();

    // What one probe through the proxy found (docs/design.md §8).
    struct ProbeAnswer {
        int status = 0;      // the HTTP status, 0: no HTTP answer
        std::string message; // "HTTP 200", "connection refused", ...
        // X-Deploy-Routed of the answer: "APP RELEASE", "none" (no route),
        // nullopt when the answer did not recognize the probe key (not our proxy).
        std::optional<std::string> routed;
    };
    // GET `path` with Host `host` from the proxy's plain listener, carrying
    // the probe key; one local request.
    ProbeAnswer probe(const std::string& host, const std::string& path,
                      std::chrono::milliseconds timeout) const;
    // Where probes go: the plain listener's address (a wildcard becomes loopback).
    std::string probe_address() const;

  private:
    // A listening socket the agent keeps for the proxy's restarts.
    struct HeldSocket {
        std::string listen;  // HOST:PORT; empty: not wanted
        int child_fd;        // the descriptor number the proxy gets it as
        std::string setting; // where `listen` is set, named when it cannot be bound
        int fd = -1;         // -1: none held, the proxy binds `listen` itself
    };
    // What an address that cannot be bound does to a start: the first start
    // fails (another program holds it), a restart or replacement warns (it may
    // be held by a proxy of ours) and lets the proxy bind it itself.
    enum class BindFailure { fatal, warn };

    // Reads DATA_DIR/proxy/probe.key, or makes it (32 random bytes, hex, 0600).
    common::Status load_probe_key_locked();
    bool alive_locked() const;
    bool adopt_locked();
    common::Status spawn_locked(BindFailure bind_failure);
    // The arguments the proxy runs with, without the inherited descriptors.
    std::vector<std::string> settings_argv() const;
    // Made here before the first start, or taken from an adopted proxy
    // (pidfd_getfd of the descriptor it serves it on, which never fails).
    static common::Status take_socket(HeldSocket& socket, pid_t adopted, BindFailure bind_failure);

    DataDir m_data_dir;
    std::string m_bin;
    ProxySettings m_settings;
    mutable std::mutex m_mutex;
    pid_t m_pid = 0;
    std::int64_t m_start = 0;
    std::chrono::steady_clock::time_point m_last_spawn{};
    HeldSocket m_http;
    HeldSocket m_https;
    std::string m_probe_key; // set by ensure_running(), then never changes
};

} // namespace agent
