#pragma once
// What a connection asks before and after each request: may it go on (bearer
// tokens, agent/api/auth_gate.hpp), and record its outcome (the audit log).

#include <agent/api/router.hpp>

#include <optional>
#include <string_view>

namespace agent::api {

class RequestGate {
  public:
    virtual ~RequestGate() = default;
    // Called once the route is known (nullptr when none matched) and before
    // any of the body is read. Returns the answer to send instead of calling
    // the handler (401, 403), or nullopt to go on; may name the caller in
    // request.peer. `authorization` is the Authorization header ("" if none).
    virtual std::optional<Response> admit(Request& request, const Route* route,
                                          std::string_view authorization) = 0;
    // Whether `authorization` (the header, "" if none) names a token the gate
    // accepts, before the route is known: the TCP server serves such requests
    // from the budget of token holders (agent/api/server.hpp). No side effects.
    virtual bool authenticates(std::string_view authorization) {
        (void)authorization;
        return false;
    }
    // Called with the answer to every request, admitted or not.
    virtual void record(const Request& request, const Response& response) = 0;
};

} // namespace agent::api
