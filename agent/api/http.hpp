#pragma once
// The HTTP request and response as the API handlers see them: plain data, no
// Beast. agent/api/connection.cpp translates between these and the wire.

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agent::api {

using Params = std::map<std::string, std::string>;

// Who sent a request. On the unix socket the kernel names the user
// (SO_PEERCRED): over SSH, the user who logged in and ran dial-stdio. On TCP
// the bearer token names it (filled in by the RequestGate, agent/api/gate.hpp).
struct Peer {
    bool unix_socket = false;
    long uid = -1;        // unix socket only
    std::string user;     // the uid's name, or the uid as digits when it has none
    bool via_ssh = false; // the socket's client is sshd, or runs in an SSH session (dial-stdio)
    std::string address;  // TCP: the client's IP address ("127.0.0.1", "::1"); unix: ""
    std::string token_id; // TCP: the id of the verified bearer token
    std::string token_name;
    std::string token_app; // the app the token is limited to; "" = every app
    // TCP: the gate refused its token (401) or its address (429): counted by
    // the login throttle and audited once per address and minute, not here.
    bool login_refused = false;
};

// A request body the handler reads as it arrives (BodyKind::stream). read() returns the
// bytes it put in `data` (at most `size`), 0 at the end of the body, -1 when the body cannot
// be read (the client went away or is too slow, or it is too large): the connection then
// answers for itself, whatever the handler returns.
class BodySource {
  public:
    virtual ~BodySource() = default;
    virtual long read(char* data, std::size_t size) = 0;
};

struct Request {
    Peer peer;
    std::string method;                // "GET", "POST", ...
    std::string path;                  // raw path, without the query string
    Params query;                      // decoded query parameters
    Params params;                     // path parameters filled in by the router ({app}, {id}, ...)
    std::string body;                  // JSON routes
    std::filesystem::path body_file;   // upload routes: the body, streamed to disk
    BodySource* body_source = nullptr; // BodyKind::stream routes, while the handler runs
    std::string upgrade;               // the Upgrade header ("deployctl-run/1"), if any
    Params headers;                    // BodyKind::hook routes: every header, names lower-case
    // The Content-Encoding of a body_file or body_source ("zstd": POST /v1/blobs), as
    // sent: the handler decodes it (JSON bodies arrive decoded).
    std::string content_encoding;
};

// Receives the lines of an NDJSON stream. write() sends one line (a '\n' is
// appended) and returns false once the client has gone away; alive() checks
// without writing, so an idle follower notices a disconnect.
class StreamSink {
  public:
    virtual ~StreamSink() = default;
    virtual bool write(std::string_view line) = 0;
    virtual bool alive() = 0;
};

// The connection once a request was answered 101 Switching Protocols
// (deployctl run, docs/api.md): raw bytes both ways, for one thread.
class Duplex {
  public:
    virtual ~Duplex() = default;
    // Bytes from the client, waiting at most `timeout`: the count read, 0 once
    // the client has closed, -1 on an error, -2 when nothing came in time.
    virtual long read(char* data, std::size_t size, std::chrono::milliseconds timeout) = 0;
    // Bytes that read() returns at once (held in a buffer, or by TLS).
    virtual bool pending() = 0;
    // The socket, to poll() for input beside other descriptors.
    virtual int fd() const = 0;
    // All of `bytes`; false once the client has gone or stopped reading.
    virtual bool write(std::string_view bytes) = 0;
};

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    // Extra headers (e.g. WWW-Authenticate on a 401).
    std::vector<std::pair<std::string, std::string>> headers;
    // When set, the answer is a chunked NDJSON stream produced by this function.
    std::function<void(StreamSink&)> stream;
    // When set (with status 101), the answer switches to `upgrade_protocol`
    // and this function then has the connection until it returns; the
    // connection closes after it.
    std::function<void(Duplex&)> upgrade;
    std::string upgrade_protocol;
    // What the audit log records of the request beyond its path (a run's argv).
    std::string audit_detail;
};

// Splits "a=1&b=x%20y" into decoded pairs. Later duplicates win.
Params parse_query(std::string_view query);
// Decodes %XX escapes into `out` ('+' is kept: paths are not form data).
// Returns false for a malformed escape.
bool percent_decode(std::string_view in, std::string& out);
// True for "1", "true", "yes" or a bare name (query flags such as follow=1).
bool flag_set(const Params& query, const std::string& name);

} // namespace agent::api
