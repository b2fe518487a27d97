#pragma once
// The agent's RequestGate: bearer tokens on TCP, the kernel's word on the
// unix socket, one audit row per mutating call, and failed logins counted per
// address: a log line and an audit row per address and minute, 429 for an
// address that failed too often (docs/security.md).

#include <agent/api/gate.hpp>
#include <agent/auth/token.hpp>

#include <optional>
#include <string>

namespace agent::auth {
class AuthStore;
struct AuditEntry;
class LoginThrottle;
struct FailedLogins;
} // namespace agent::auth

namespace agent::api {

// The scope and app a route asks for (Route::access, the method, {app}).
auth::Need need_for(const std::string& method, Access access, const Params& params);

// "token:<id>", "ssh:<user>", "unix:<user>" or "anonymous": the audit's "who".
std::string who(const Peer& peer);

// The audit row of one address's failed logins in one minute.
auth::AuditEntry failed_logins_entry(const auth::FailedLogins& summary);

class AuthGate final : public RequestGate {
  public:
    // Without a throttle, failed logins are neither counted nor audited.
    explicit AuthGate(auth::AuthStore& store, auth::LoginThrottle* throttle = nullptr)
        : m_store(store), m_throttle(throttle) {}

    std::optional<Response> admit(Request& request, const Route* route,
                                  std::string_view authorization) override;
    bool authenticates(std::string_view authorization) override;
    void record(const Request& request, const Response& response) override;

    // Logs and audits the failed logins of the minutes that have ended
    // (called every second by serve), or of all, ended or not (at shutdown).
    void report_due();
    void report_all();

  private:
    Response refuse(Request& request, std::string_view token, Response response);
    void report(const auth::FailedLogins& summary);

    auth::AuthStore& m_store;
    auth::LoginThrottle* m_throttle;
};

} // namespace agent::api
