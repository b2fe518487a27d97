#pragma once
// One client connection, plain or TLS: reads requests, routes each by its
// Host header against the table current at that moment, forwards it over a
// pooled upstream connection and streams the response back.
//
// Session is a template over the client stream so that the plain path pays
// nothing for TLS. Its members live in session.cpp, session_forward.ipp and
// session_static.ipp, one translation unit that instantiates both kinds.

#include <agent/proxy/headers.hpp>
#include <agent/proxy/retry.hpp>
#include <agent/proxy/routes.hpp>
#include <agent/proxy/tls_certificates.hpp>
#include <agent/proxy/upstream_pool.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace agent::proxy {

class Worker;

using TlsStream = boost::beast::ssl_stream<Stream>;

// What TLS sessions are made with: the certificates (their SNI callback must
// outlive every connection made with them) and the Asio context around the
// default one. Replaced as a whole when the certificates are reloaded.
struct TlsSetup {
    explicit TlsSetup(std::shared_ptr<const TlsCertificates> loaded);
    std::shared_ptr<const TlsCertificates> certificates;
    boost::asio::ssl::context context;
};

// What a Worker knows of its sessions, whichever their stream.
class SessionBase {
  public:
    virtual ~SessionBase() = default;
    // Graceful shutdown: closes the connection if it waits for a request.
    virtual void close_if_idle() = 0;
    // A request held at a paused route (Worker::hold) is routed again with
    // the worker's current table.
    virtual void resume() = 0;
};

template <class ClientStream>
class Session final : public SessionBase,
                      public std::enable_shared_from_this<Session<ClientStream>> {
  public:
    static constexpr bool k_tls = std::is_same_v<ClientStream, TlsStream>;

    // `tls`: null for a plain session; a TLS one handshakes with it first.
    Session(Socket socket, Worker& worker, std::shared_ptr<TlsSetup> tls);
    ~Session() override;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();
    void close_if_idle() override;
    void resume() override;

  private:
    using error_code = boost::beast::error_code;
    using std::enable_shared_from_this<Session<ClientStream>>::shared_from_this;

    // The TCP stream under the client stream: timeouts, socket options, close.
    Stream& client_tcp() { return boost::beast::get_lowest_layer(m_client); }
    void on_handshake(error_code ec);
    // Plain HTTP to a host a certificate covers, with redirects on: 308 to https.
    bool redirect_to_https();
    // --acme-dir: GET /.well-known/acme-challenge/TOKEN answered from the
    // agent's file for TOKEN, whatever the host (false: no such file).
    bool serve_acme_challenge();
    // "APP RELEASE" of the current route, "none" without one: what a probe's
    // answer carries in X-Deploy-Routed.
    std::string routed_to() const;

    // Client side (session.cpp).
    void read_request();
    void on_request_header(error_code ec, std::size_t bytes);
    void on_continue_sent(error_code ec, std::size_t bytes);
    void on_read_error(error_code ec);
    // The request body was not read to its end: the connection cannot carry
    // another request. Sends FIN, then reads and discards what the client
    // still sends (bounded: k_linger_bytes, k_linger_timeout) so that it
    // reads the answer instead of a reset, then closes.
    void linger_close();
    void on_linger_read(std::size_t total, error_code ec, std::size_t bytes);
    void dispatch();
    // Routes the request with the worker's current table: first when its
    // header was read, again when a held request is released.
    void route_request(bool first);
    // A route with a canary: m_route becomes the side this request goes to
    // (its cookie, else a hash of its client), m_canary_cookie what sets it.
    void pick_canary_side();
    enum class After { keep_alive, close };
    // A short text/plain answer (and a Location header when `location` is
    // set, Retry-After when `retry_after` is).
    void respond_plain(boost::beast::http::status status, std::string body, After after,
                       std::string_view location = {},
                       std::string_view content_type = "text/plain; charset=utf-8",
                       std::string_view retry_after = {});
    // deployctl maintenance on: 503, Retry-After, the release's page or the
    // built-in one (JSON for a client that accepts only JSON).
    void respond_maintenance();
    // deployctl pause: the request waits (Worker::hold) until a table routes
    // it without the pause, or 503 after the route's timeout.
    void hold(std::chrono::milliseconds timeout, bool waking);
    // [deploy] idle_stop: a sleeping app's request asks the agent to start it
    // and is held (503 at once after a failed start, or for a probe).
    void wake();
    // 503 with `text`, or `json` for a client that accepts only JSON.
    void respond_error_text(std::string text, std::string json, std::string_view retry_after);
    void on_hold_timeout(std::uint64_t seq, error_code ec);
    void respond_paused();
    // A route of a stopped app (deployctl stop): 503, an HTML page for a
    // browser (Accept: text/html), else one line of text.
    void respond_stopped();
    void on_plain_written(bool keep_alive, error_code ec, std::size_t bytes);
    void end_exchange(bool keep_alive);
    void close();
    // Ends a connection whose last exchange is over: over TLS, close_notify
    // first (sent, not waited for), then close().
    void end_connection();
    // Whether the client's next request has (partly) arrived, unread.
    bool request_waiting();

    // A route to a [static] release (session_static.ipp).
    void serve_static();

    // Upstream side (session_forward.ipp).
    void forward();
    void connect_upstream();
    void on_upstream_connected(error_code ec);
    void write_upstream();
    void on_upstream_written(error_code ec, std::size_t bytes);
    // The request body, streamed: pieces read from the client, each written
    // upstream (re-chunked if the client sent it chunked). The first piece is
    // read into m_chunk; a body that does not end there goes on through the
    // two buffers of m_pipe, the next piece read while the previous is written.
    void read_request_body();
    void on_request_body(error_code ec, std::size_t bytes);
    void on_request_body_written(error_code ec, std::size_t bytes);
    void write_body(const char* data, std::size_t n, bool done); // `done`: the last piece
    // A failure of either side while the body streams, acted on once neither
    // side has an operation under way.
    void body_failed();
    // Gives back what a body that streamed took (m_pipe's buffers, the read
    // buffer's growth).
    void release_body_buffers();
    // What is known of the attempt that just failed (retry.hpp).
    Attempt current_attempt(bool got_response_bytes, bool timed_out) const;
    // One 502/504 log line, rate-limited per app (retry.hpp: LogLimiter).
    void log_gateway_error(std::string line);
    void read_upstream_header();
    void on_upstream_header(error_code ec, std::size_t bytes);
    void upstream_failed(error_code ec, bool got_response_bytes);
    bool reroute();
    // Balancing over the route's upstreams: the one this request starts on
    // (round robin), the one it uses now, and a move to the next untried one
    // after `upstream()` failed (false: none left, or the request may have
    // reached it and is not idempotent).
    void choose_upstream();
    const Upstream& upstream() const { return m_route->upstreams[m_index]; }
    bool fail_over(error_code ec, std::string_view what);
    void on_client_header_written(error_code ec, std::size_t bytes); // bodiless responses
    void relay_body();
    void on_relay_read(error_code ec, std::size_t bytes);
    void on_relay_written(error_code ec, std::size_t bytes);
    void complete_exchange();

    // An upgraded connection (session_upgrade.ipp): after the app's 101, raw
    // bytes both ways until both sides closed, or nothing moved for the
    // route's websocket_idle.
    void open_tunnel();
    void on_tunnel_opened(error_code ec, std::size_t bytes);
    void tunnel_read_client();
    void on_tunnel_client_read(error_code ec, std::size_t bytes);
    void on_tunnel_upstream_written(error_code ec, std::size_t bytes);
    void tunnel_read_upstream();
    void on_tunnel_upstream_read(error_code ec, std::size_t bytes);
    void on_tunnel_client_written(error_code ec, std::size_t bytes);
    void tunnel_side_done(bool client_side);
    void arm_tunnel_timer();
    // `going_away`: the proxy ends the connection itself (idle, shutdown): a
    // WebSocket client gets a close frame 1001 first when the app's frames
    // are at a boundary and nothing is being written to it.
    void close_tunnel(bool going_away = false);

    Worker& m_worker;
    std::shared_ptr<TlsSetup> m_tls; // TLS sessions only
    ClientStream m_client;
    boost::beast::flat_buffer m_client_buffer;
    std::string m_client_ip;
    std::string m_canary_cookie; // Set-Cookie for the side chosen (empty: none to set)
    bool m_split = false;        // the route has a canary: counted per release too
    std::optional<RequestParser> m_request;
    ClientFraming m_framing;
    bool m_idle = false; // waiting for the first byte of a request

    // The table that routed the current request: pinned until the response is
    // done, so a switch never moves a request that is already under way.
    std::shared_ptr<const RouteTable> m_table;
    const Route* m_route = nullptr;
    UpstreamPtr m_upstream;
    bool m_retried = false;
    std::size_t m_index = 0;   // of m_route->upstreams: where the request goes now
    std::uint64_t m_tried = 0; // bit i: upstream i was tried for this request
    bool m_sent = false;       // a byte of the request was written to (maybe reached) an upstream
    bool m_chunked_upstream = false; // the body goes upstream re-chunked
    bool m_body_consumed = false;    // body bytes were read from the client (no replay)
    std::uint64_t m_body_read = 0;   // body bytes read from the client so far
    std::size_t m_body_held = 0;     // a whole body read in one piece, still in m_chunk
    bool m_continue = false;         // the client waits for 100 Continue before its body
    std::string m_chunk_head;        // "HEX\r\n" of a re-chunked piece
    std::optional<ResponseParser> m_response;
    std::optional<boost::beast::http::serializer<false, boost::beast::http::buffer_body>>
        m_serializer;
    std::vector<char> m_chunk; // body relay buffer, allocated once per connection
    struct BodyPipe {
        enum class Fail { none, client_gone, malformed, too_large, upstream };
        std::unique_ptr<char[]> buffers; // 2 x k_body_chunk, while a body streams
        bool reading = false;            // a read from the client is under way
        bool writing = false;            // a write upstream is under way
        char* read_into = nullptr;       // where the read under way puts its piece
        std::size_t read_size = 0;
        const char* written = nullptr; // the buffer of the write under way
        // A piece read while the previous one was still being written.
        bool has_ready = false;
        const char* ready = nullptr;
        std::size_t ready_n = 0;
        bool ready_done = false;
        Fail fail = Fail::none;
        error_code upstream_error; // Fail::upstream
    };
    BodyPipe m_pipe;
    bool m_relay_grown = false; // the upstream's read buffer grew for this response
    // Serialized header of the message being written (see serialize_header);
    // for a response, emptied once it is out. Unused when m_serializer is.
    std::string m_head;

    // The protocol the current request asks to switch to ("websocket"), empty
    // for a plain request: forwarded with its Upgrade on a fresh connection.
    std::string m_upgrade;
    struct Tunnel {
        explicit Tunnel(const Executor& executor) : timer(executor) {}
        boost::asio::steady_timer timer; // websocket_idle
        std::chrono::milliseconds idle{0};
        std::chrono::steady_clock::time_point last_activity;
        std::vector<char> up;       // client to upstream, fixed size
        std::vector<char> down;     // upstream to client, fixed size
        bool client_done = false;   // the client closed its side
        bool upstream_done = false; // the upstream closed its side
        bool closed = false;
        bool writing_client = false; // a write to the client is under way
        WebSocketFrames frames;      // the app's frames, when the protocol is websocket
        bool websocket = false;
        std::string app; // counted in deploy_proxy_websockets until closed
    };
    std::unique_ptr<Tunnel> m_tunnel;

    // The current request carries the agent's probe key: it is not redirected
    // and its answer names the route in X-Deploy-Routed (docs/design.md §8).
    bool m_probe = false;
    // The request under way as deploy-proxy's figures count it (stats.hpp):
    // its app ("": none routed), when its head was read, the status answered
    // (0: none yet) and the bytes written to the client.
    std::string m_stat_app;
    std::chrono::steady_clock::time_point m_stat_started{};
    unsigned m_stat_status = 0;
    std::uint64_t m_stat_out = 0;
    // For its access log line: the release that routed it (the upstream is
    // m_index of the route when m_tried says one was chosen).
    std::string m_stat_release;
    // Its X-Request-Id: the client's when acceptable (access_log.hpp), else a new one.
    std::string m_request_id;
    bool m_own_request_id = false; // m_request_id replaces the client's X-Request-Id
    void stat_begin();
    void stat_end();
    void log_access(double seconds, std::string_view method);
    // Pause: the request waits for a new table (m_held); its timer, made on
    // the first hold of the connection, is armed once per request.
    std::unique_ptr<boost::asio::steady_timer> m_hold_timer;
    std::uint64_t m_hold_seq = 0; // a wait whose number is not this one is stale
    bool m_hold_armed = false;
    bool m_held = false;
    bool m_hold_waking = false; // held for a sleeping app (not a pause)
    std::string m_host;         // scratch: normalized Host of the current request
    boost::beast::http::response<boost::beast::http::string_body> m_plain;
};

} // namespace agent::proxy
