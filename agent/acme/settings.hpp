#pragma once
// [acme] of agent.toml as the agent runs with it (docs/tls.md); and what
// `deployctl certs` shows; kept apart from manager.hpp so that the service's
// settings and answers carry them cheaply.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace agent::acme {

struct Settings {
    bool enabled = false;
    std::string directory = "https://acme-v02.api.letsencrypt.org/directory";
    std::string ca_file; // trust for the ACME server's own TLS (a private CA, Pebble)
    std::string email;
    std::string eab_kid;
    std::string eab_hmac_key;
    // In order of preference; a wildcard always uses dns-01.
    std::vector<std::string> challenges{"http-01", "tls-alpn-01"};
    std::string dns_hook; // dns-01: "HOOK add|remove NAME VALUE"
    bool on_demand = false;
    std::string ask; // on-demand: GET ASK?domain=NAME must answer 200
    // The first retry after a failure; each failure in a row doubles it, up to 6 hours.
    std::chrono::seconds retry{60};
};

// What `deployctl certs` shows of one name.
struct CertificateStatus {
    std::string name;
    std::string state; // valid, pending, failed, expired, unused
    bool on_demand = false;
    std::string issuer;
    std::int64_t not_before = 0; // unix seconds, 0: no certificate
    std::int64_t not_after = 0;
    std::int64_t renew_at = 0;
    std::int64_t last_renewal = 0;
    std::int64_t next_attempt = 0; // 0: none planned (valid until renew_at)
    std::string last_error;
    std::uint64_t failures = 0; // in a row
    std::uint64_t failures_total = 0;
    std::uint64_t issued_total = 0;
};

} // namespace agent::acme
