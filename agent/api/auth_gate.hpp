#pragma once
// The agent's RequestGate: bearer tokens on TCP, the kernel's word on the
// unix socket, and one audit row per mutating call (docs/security.md).

#include <agent/api/gate.hpp>
#include <agent/auth/token.hpp>

#include <string>

namespace agent::auth {
class AuthStore;
}

namespace agent::api {

// The scope and app a route asks for (Route::access, the method, {app}).
auth::Need need_for(const std::string& method, Access access, const Params& params);

// "token:<id>", "ssh:<user>", "unix:<user>" or "anonymous": the audit's "who".
std::string who(const Peer& peer);

class AuthGate final : public RequestGate {
  public:
    explicit AuthGate(auth::AuthStore& store) : m_store(store) {}

    std::optional<Response> admit(Request& request, const Route* route,
                                  std::string_view authorization) override;
    bool authenticates(std::string_view authorization) override;
    void record(const Request& request, const Response& response) override;

  private:
    auth::AuthStore& m_store;
};

} // namespace agent::api
