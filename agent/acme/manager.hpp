#pragma once
// Certificates by themselves ([acme] in agent.toml, docs/tls.md): every
// domain the routing table names gets a certificate from the ACME server, is
// renewed at two thirds of its lifetime, and is retried with a doubling delay
// after a failure; names asked for in a TLS handshake (on-demand, allowed by
// the `ask` URL) too. One thread issues, one name at a time; the files it
// writes under DATA_DIR/acme are what deploy-proxy serves (--acme-dir):
//   account.key             the account's key (0600, made once, never replaced)
//   state.json              per name: failures, last error, next attempt, on-demand
//   certs/NAME.{key,crt}    a name's key and chain ("*.example.com" as "_.example.com")
//   http-01/TOKEN           HTTP-01 key authorizations while a challenge is open
//   tls-alpn-01/NAME.{key,crt}  TLS-ALPN-01 challenge certificates, likewise

#include <agent/acme/crypto.hpp>
#include <agent/acme/settings.hpp>
#include <agent/paths.hpp>
#include <common/result.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace agent::acme {

class Manager {
  public:
    static constexpr std::chrono::hours k_retry_max{6};
    // On-demand: a name the ask URL refused is not asked about again for this long,
    // and at most k_on_demand_per_minute new names are issued a minute.
    static constexpr std::chrono::seconds k_refusal_memory{60};
    static constexpr int k_on_demand_per_minute = 10;

    // `reload_proxy`: signal deploy-proxy to read the certificate files again.
    // `https_address`: where deploy-proxy serves TLS (TLS-ALPN-01 is checked there).
    Manager(Settings settings, DataDir data_dir, std::string https_address,
            std::function<void()> reload_proxy);
    ~Manager();
    Manager(const Manager&) = delete;
    Manager& operator=(const Manager&) = delete;

    // Makes DATA_DIR/acme and its folders, reads the state and the account key
    // (refused when a setting cannot work, e.g. on_demand without ask).
    common::Status open();
    void start();
    void stop();
    const Settings& settings() const { return m_settings; }
    std::filesystem::path dir() const { return m_data_dir.root() / "acme"; }

    // The routing table's hosts: those that can have a certificate are wanted.
    void set_hosts(const std::vector<std::string>& hosts);
    // A deploy is about to route `hosts`: each one without a valid certificate
    // is tried now (whatever its backoff), waiting at most `bound` for them.
    // Returns one line per such name for the deploy's output.
    std::vector<std::string> settle(const std::vector<std::string>& hosts,
                                    std::chrono::milliseconds bound);
    // A TLS handshake asked for `name` and no certificate covers it (on-demand).
    void on_demand(const std::string& name);
    std::vector<CertificateStatus> list() const;
    // Prometheus text: expiry and issuance counters per name (docs/metrics.md).
    std::string metrics() const;

    // Whether a host can get a certificate: what deploy-proxy's valid_sni_host
    // accepts, "*." allowed in front (a wildcard).
    static bool eligible(const std::string& host);
    // The file stem of a name under certs/ ("_.example.com" for "*.example.com").
    static std::string file_stem(const std::string& name);

  private:
    struct Entry {
        bool wanted = false;    // in the routing table
        bool on_demand = false; // allowed by the ask URL
        std::uint64_t failures = 0;
        std::uint64_t failures_total = 0;
        std::uint64_t issued_total = 0;
        std::int64_t next_attempt = 0;
        std::int64_t last_attempt = 0;
        std::int64_t last_renewal = 0;
        std::string last_error;
        // Attempts: one under way, those ended, and whether a deploy asked for
        // the name while one was under way (the next one then starts at once).
        bool running = false;
        bool urgent = false;
        int settling = 0; // deploys waiting for it (wanted even before the table routes it)
        std::uint64_t finished = 0;
        // From the certificate file (0 when there is none).
        std::int64_t not_before = 0;
        std::int64_t not_after = 0;
        std::string issuer;
    };

    void run();
    // The name whose attempt is due, or "" and when to look again.
    std::string due_locked(std::int64_t now, std::int64_t& wake_at) const;
    void attempt(const std::string& name);
    // The whole issuance of one name: the chain's PEM, written under certs/ with its key.
    common::Result<std::string> issue(const std::string& name);
    void read_certificate_locked(const std::string& name, Entry& entry) const;
    static std::int64_t renew_at(const Entry& entry);
    void save_locked() const;
    void load_state();
    // On-demand: whether the ask URL allows `name` (a 200).
    common::Result<bool> ask(const std::string& name) const;
    // The socket deploy-proxy sends on-demand names to, and its reader thread.
    common::Status open_socket();
    void socket_loop();
    // Waits (5 s at most) until deploy-proxy answers a handshake for `name` (offering
    // acme-tls/1 when `alpn_challenge`) with the certificate `cert_pem` begins with.
    common::Status wait_served(const std::string& name, const std::string& cert_pem,
                               bool alpn_challenge) const;

    Settings m_settings;
    DataDir m_data_dir;
    std::string m_https_address;
    std::function<void()> m_reload_proxy;
    std::optional<EcKey> m_account; // read or made by open()
    mutable std::mutex m_mutex;
    std::condition_variable m_wake;
    std::map<std::string, Entry> m_entries;
    std::map<std::string, std::chrono::steady_clock::time_point> m_refused; // on-demand
    std::vector<std::chrono::steady_clock::time_point> m_on_demand_issued;
    std::set<std::string> m_on_demand_queue;
    bool m_stopping = false;
    std::atomic<bool> m_cancel{false}; // m_stopping for the ACME client's requests
    int m_socket = -1;
    std::thread m_thread;
    std::thread m_socket_thread;
};

} // namespace agent::acme
