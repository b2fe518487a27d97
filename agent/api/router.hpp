#pragma once
// Method + path -> handler. Patterns are '/'-separated segments where
// "{name}" captures one whole segment into Request::params.

#include <agent/api/http.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace agent::api {

using Handler = std::function<Response(const Request&)>;

// How the connection reads the request body before calling the handler.
enum class BodyKind {
    json,       // into Request::body, up to k_max_json_body (k_max_small_body for GET, DELETE)
    small_json, // likewise, up to k_max_small_body: bodies of a few fields
    file,       // streamed to a temporary file (Request::body_file), up to k_max_blob_size
    // read by the handler as it arrives (Request::body_source), up to k_max_blob_size:
    // nothing of it is written as it came
    stream,
    // a webhook's delivery: into Request::body as sent, up to k_max_hook_body, with the
    // request's headers in Request::headers (its signature is one)
    hook,
};

// Who may call a route over TCP (docs/security.md): by_method asks the read
// scope of GET and the deploy scope of anything else, on the {app} of the path
// (on any app when the path has none); admin asks the admin scope on all apps;
// open asks nothing (/v1/health).
enum class Access { by_method, admin, open };

inline constexpr std::size_t k_max_json_body = 64ull * 1024 * 1024;
inline constexpr std::size_t k_max_small_body = 64ull * 1024;
inline constexpr std::size_t k_max_hook_body = 1024ull * 1024;

struct Route {
    std::string method;
    std::string pattern;
    BodyKind body = BodyKind::json;
    Handler handler;
    Access access = Access::by_method;
};

enum class MatchResult { found, not_found, method_not_allowed };

struct Match {
    MatchResult result = MatchResult::not_found;
    const Route* route = nullptr;
    Params params;
};

class Router {
  public:
    void add(std::string method, std::string pattern, Handler handler,
             BodyKind body = BodyKind::json, Access access = Access::by_method);
    // `path` is the raw path without the query string; captured segments are
    // percent-decoded after splitting, so "%2F" cannot forge a segment.
    Match match(std::string_view method, std::string_view path) const;

  private:
    std::vector<Route> m_routes;
};

// Splits "/v1/apps/x" into {"v1","apps","x"}; an empty segment ("//", trailing
// '/') is kept as "" so that such paths do not match.
std::vector<std::string> split_path(std::string_view path);
// Matches one pattern against a raw path, filling `params` (decoded).
bool match_pattern(std::string_view pattern, std::string_view path, Params& params);

} // namespace agent::api
