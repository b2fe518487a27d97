// Client side of a session: handshake, read a request, route it, answer errors.
// The upstream and static sides are included at the end: one translation unit
// instantiates Session for both client streams.
#include <agent/proxy/acme.hpp>
#include <agent/proxy/client_hello.hpp>
#include <agent/proxy/limits.hpp>
#include <agent/proxy/session.hpp>
#include <agent/proxy/worker.hpp>
#include <common/log.hpp>

#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>

#include <limits>

namespace agent::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
constexpr std::string_view k_continue = "HTTP/1.1 100 Continue\r\n\r\n";
} // namespace

TlsSetup::TlsSetup(std::shared_ptr<const TlsCertificates> loaded)
    : certificates(std::move(loaded)), context([this] {
          SSL_CTX* shared = certificates->default_context();
          SSL_CTX_up_ref(shared); // the Asio context frees its own reference
          return shared;
      }()) {}

namespace {

template <class ClientStream> ClientStream make_client_stream(Socket socket, TlsSetup* tls) {
    if constexpr (std::is_same_v<ClientStream, TlsStream>) {
        return ClientStream(std::move(socket), tls->context);
    } else {
        return ClientStream(std::move(socket));
    }
}

} // namespace

template <class ClientStream>
Session<ClientStream>::Session(Socket socket, Worker& worker, std::shared_ptr<TlsSetup> tls)
    : m_worker(worker), m_tls(std::move(tls)),
      m_client(make_client_stream<ClientStream>(std::move(socket), m_tls.get())) {
    error_code ec;
    client_tcp().socket().set_option(asio::ip::tcp::no_delay(true), ec);
    auto peer = client_tcp().socket().remote_endpoint(ec);
    m_client_ip = ec ? "unknown" : peer.address().to_string();
    m_worker.add(this);
    m_worker.stats().connection(+1);
}

template <class ClientStream> Session<ClientStream>::~Session() {
    stat_end();
    if (m_tunnel && !m_tunnel->closed) {
        m_worker.stats().websocket(m_tunnel->app, -1);
    }
    m_worker.stats().connection(-1);
    m_worker.remove(this);
}

template <class ClientStream> void Session<ClientStream>::start() {
    if constexpr (k_tls) {
        client_tcp().expires_after(k_handshake_timeout);
        m_client.async_handshake(
            asio::ssl::stream_base::server,
            beast::bind_front_handler(&Session::on_handshake, shared_from_this()));
    } else {
        read_request();
    }
}

template <class ClientStream> void Session<ClientStream>::on_handshake(error_code ec) {
    if (ec) {
        // Scanners, clients that distrust the certificate, plain HTTP sent to
        // the HTTPS port: nothing the operator has to act on.
        common::log_debug(
            fmt::format("TLS handshake with {} failed: {}", m_client_ip, ec.message()));
        return close();
    }
    if constexpr (k_tls) {
        const unsigned char* protocol = nullptr;
        unsigned int length = 0;
        SSL_get0_alpn_selected(m_client.native_handle(), &protocol, &length);
        if (std::string_view(reinterpret_cast<const char*>(protocol), length) ==
            k_acme_tls_protocol) {
            // A TLS-ALPN-01 validation (RFC 8737): the handshake was all of it.
            common::log_debug(fmt::format("ACME TLS-ALPN-01 validation from {}", m_client_ip));
            return close();
        }
    }
    read_request();
}

template <class ClientStream> void Session<ClientStream>::close_if_idle() {
    // Bytes already here are a request on its way (a busy worker may not
    // have read them yet): it is read and answered with Connection: close.
    if (m_idle && !request_waiting()) {
        close();
    } else if (m_tunnel) {
        close_tunnel(true); // an upgraded connection never waits for a request
    }
}

template <class ClientStream> bool Session<ClientStream>::request_waiting() {
    error_code ec;
    return client_tcp().socket().available(ec) > 0 && !ec;
}

template <class ClientStream> void Session<ClientStream>::close() {
    error_code ignored;
    client_tcp().socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    client_tcp().close();
}

template <class ClientStream> void Session<ClientStream>::read_request() {
    // Stopping: a client told keep-alive may already be sending its next
    // request; it is still read (and answered with Connection: close) until
    // the worker's idle grace is over.
    if (m_worker.idle_grace_over() && m_client_buffer.size() == 0 && !request_waiting()) {
        return close();
    }
    m_request.emplace();
    m_request->header_limit(k_header_limit);
    // The body is streamed, its size checked against the route's max_body.
    m_request->body_limit(std::numeric_limits<std::uint64_t>::max());
    m_idle = m_client_buffer.size() == 0;
    client_tcp().expires_after(m_idle ? k_keep_alive_timeout : k_client_timeout);
    http::async_read_header(
        m_client, m_client_buffer, *m_request,
        beast::bind_front_handler(&Session::on_request_header, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_request_header(error_code ec, std::size_t) {
    m_idle = false;
    if (ec) {
        return on_read_error(ec);
    }
    auto& request = m_request->get();
    m_framing = {request.version(), request.keep_alive() && !m_worker.stopping()};
    // The body (if any) is not read here: dispatch() checks it against the
    // route's max_body, then forward() streams it to the app.
    m_continue =
        !m_request->is_done() && beast::iequals(request[http::field::expect], "100-continue");
    m_body_read = 0;
    m_body_held = 0;
    m_body_consumed = false;
    release_body_buffers();
    m_pipe = {};
    dispatch();
}

// 100 Continue is sent once the request is routed and its Content-Length
// accepted, right before its body is streamed upstream.
template <class ClientStream>
void Session<ClientStream>::on_continue_sent(error_code ec, std::size_t) {
    if (ec) {
        m_upstream.reset();
        return close();
    }
    read_request_body();
}

template <class ClientStream> void Session<ClientStream>::on_read_error(error_code ec) {
    if (ec == http::error::body_limit) {
        return respond_plain(http::status::payload_too_large, "request body too large\n",
                             After::close);
    }
    if (ec == http::error::header_limit) {
        return respond_plain(http::status::request_header_fields_too_large,
                             "request header too large\n", After::close);
    }
    if (ec.category() == error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
        return respond_plain(http::status::bad_request, "malformed request\n", After::close);
    }
    close(); // the client went away, timed out or we are shutting down
}

template <class ClientStream> void Session<ClientStream>::dispatch() {
    auto& request = m_request->get();
    if (!m_worker.acme_http_dir().empty() && serve_acme_challenge()) [[unlikely]] {
        return;
    }
    auto host = request[http::field::host];
    if (host.empty()) {
        return respond_plain(http::status::bad_request, "missing Host header\n", After::close);
    }
    normalize_host(host, m_host);
    m_probe = false;
    if (auto probe = request.find(k_probe_field); probe != request.end()) {
        // Never reaches an app, whoever sent it (upstream_request_head leaves it out).
        m_probe = m_worker.is_probe(probe->value());
    }
    m_route = nullptr;
    if constexpr (!k_tls) {
        if (!m_probe && m_worker.redirects_https() && redirect_to_https()) {
            return;
        }
    }
    route_request(true);
}

template <class ClientStream> void Session<ClientStream>::route_request(bool first) {
    m_table = m_worker.table();
    m_route = m_host.empty() ? nullptr : m_table->find(m_host);
    if (m_route == nullptr) {
        m_table.reset();
        return respond_plain(
            http::status::not_found,
            fmt::format("no app is deployed at {}\n",
                        m_host.empty() ? std::string_view("this host") : std::string_view(m_host)),
            After::keep_alive);
    }
    // Maintenance and pause act on the route, whichever side a canary would take.
    // The agent's probes pass: a release is health-checked through the proxy.
    const bool maintenance = !m_probe && m_route->maintenance != nullptr;
    const bool pause = !m_probe && !maintenance && m_route->paused();
    m_canary_cookie.clear();
    m_split = false;
    if (m_route->canary && !maintenance && !pause) [[unlikely]] {
        pick_canary_side();
    }
    if (first || m_stat_app.empty() || m_stat_app != m_route->app) {
        stat_begin(); // (again when held and the host now routes another app)
    } else {
        m_stat_release = m_route->release;
    }
    if (maintenance) {
        return respond_maintenance();
    }
    if (pause) {
        return hold(m_route->pause, false);
    }
    if (m_route->stopped) {
        return respond_stopped();
    }
    if (m_route->sleeping()) {
        return wake();
    }
    if (m_route->is_static()) {
        return serve_static();
    }
    if (!m_request->is_done() && m_route->max_body != 0 && m_request->content_length() &&
        *m_request->content_length() > m_route->max_body) {
        // Answered before a byte of the body is read (and before 100
        // Continue, so a client that waits for it sends none).
        common::log_info(fmt::format("{} ({}): 413 for a {}-byte body over max_body {} from {}",
                                     m_route->app, m_route->release, *m_request->content_length(),
                                     m_route->max_body, m_client_ip));
        return respond_plain(
            http::status::payload_too_large,
            fmt::format("request body too large (max_body is {} bytes)\n", m_route->max_body),
            After::close);
    }
    m_upgrade = upgrade_protocol(m_request->get());
    m_chunked_upstream = !m_request->is_done() && m_request->chunked();
    forward();
}

namespace {

// Whether a client asked for JSON and not for HTML (an API client).
bool wants_json_only(std::string_view accept) {
    return accept.find("json") != std::string_view::npos &&
           accept.find("text/html") == std::string_view::npos;
}

} // namespace

template <class ClientStream> void Session<ClientStream>::respond_maintenance() {
    const Maintenance& maintenance = *m_route->maintenance;
    const std::string retry_after =
        maintenance.retry_after ? std::to_string(maintenance.retry_after) : std::string();
    const bool json = wants_json_only(m_request->get()[http::field::accept]);
    respond_plain(http::status::service_unavailable, json ? maintenance.json : maintenance.page,
                  After::keep_alive, {}, json ? "application/json" : "text/html; charset=utf-8",
                  retry_after);
}

template <class ClientStream> void Session<ClientStream>::wake() {
    // A probe is the agent's own request: it starts the app itself.
    const bool failed = !m_route->wake_error.empty();
    if (!m_probe) {
        m_worker.wake(m_route->app);
    }
    if (m_probe || failed) {
        // App names are [a-z0-9-]: nothing to escape in JSON. The failure's
        // answers were made when the table loaded.
        std::string text =
            m_probe ? m_route->app + " is asleep ([deploy] idle_stop)\n" : m_route->wake_error;
        std::string json = m_probe ? fmt::format("{{\"error\": \"{} is asleep\"}}\n", m_route->app)
                                   : m_route->wake_error_json;
        m_table.reset();
        m_route = nullptr;
        return respond_error_text(std::move(text), std::move(json), "5");
    }
    hold(m_route->wake, true);
}

template <class ClientStream>
void Session<ClientStream>::hold(std::chrono::milliseconds timeout, bool waking) {
    m_hold_waking = waking;
    const bool worker_stopping = m_worker.stopping();
    m_table.reset();
    m_route = nullptr;
    if (worker_stopping) { // this proxy is being replaced: nothing will release it
        return respond_paused();
    }
    if (!m_hold_armed) {
        if (!m_hold_timer) {
            m_hold_timer = std::make_unique<asio::steady_timer>(client_tcp().get_executor());
        }
        m_hold_armed = true;
        m_hold_timer->expires_after(timeout);
        m_hold_timer->async_wait(
            beast::bind_front_handler(&Session::on_hold_timeout, shared_from_this(), ++m_hold_seq));
    }
    m_held = true;
    m_worker.hold(shared_from_this());
}

template <class ClientStream> void Session<ClientStream>::resume() {
    if (!m_held) {
        return;
    }
    m_held = false;
    route_request(false);
}

template <class ClientStream>
void Session<ClientStream>::on_hold_timeout(std::uint64_t seq, error_code ec) {
    if (ec || seq != m_hold_seq || !m_held) {
        return; // released (or this connection's next request holds again)
    }
    m_held = false;
    m_worker.unhold(this);
    respond_paused();
}

template <class ClientStream> void Session<ClientStream>::respond_paused() {
    // App names are [a-z0-9-]: nothing to escape in JSON.
    const std::string message =
        m_stat_app + (m_hold_waking ? " is starting" : " is paused") + "; try again shortly";
    respond_error_text(message + "\n", fmt::format("{{\"error\": \"{}\"}}\n", message), "5");
}

template <class ClientStream>
void Session<ClientStream>::respond_error_text(std::string text, std::string json,
                                               std::string_view retry_after) {
    if (wants_json_only(m_request->get()[http::field::accept])) {
        return respond_plain(http::status::service_unavailable, std::move(json), After::keep_alive,
                             {}, "application/json", retry_after);
    }
    respond_plain(http::status::service_unavailable, std::move(text), After::keep_alive, {},
                  "text/plain; charset=utf-8", retry_after);
}

template <class ClientStream> void Session<ClientStream>::pick_canary_side() {
    const auto& request = m_request->get();
    const Route& canary = *m_route->canary;
    m_split = true;
    std::optional<bool> side;
    if (auto cookie = request.find(http::field::cookie); cookie != request.end()) {
        side = canary_cookie_side(cookie->value(), canary.release);
    }
    if (!side) {
        auto client = request.find(k_canary_client_field);
        side = canary_hash_side(client != request.end() && !client->value().empty()
                                    ? std::string_view(client->value())
                                    : std::string_view(m_client_ip),
                                m_route->canary_percent);
        m_canary_cookie = fmt::format("{}={}:{}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax",
                                      k_canary_cookie, canary.release, *side ? 'c' : 'p');
    }
    if (*side) {
        m_route = &canary;
    }
}

template <class ClientStream> void Session<ClientStream>::respond_stopped() {
    const std::string& app = m_route->app; // [a-z0-9-]: nothing to escape in HTML
    const auto accept = m_request->get()[http::field::accept];
    if (m_route->scaled_to_zero) {
        if (accept.find("text/html") != std::string_view::npos) {
            return respond_plain(
                http::status::service_unavailable,
                fmt::format("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0} is "
                            "scaled to zero</title></head>\n<body><h1>{0} has no web "
                            "instances</h1>\n<p>Its web process was scaled to zero with "
                            "<code>deployctl scale web=0</code>. Serve it again with "
                            "<code>deployctl scale web=1</code>.</p></body></html>\n",
                            app),
                After::keep_alive, {}, "text/html; charset=utf-8");
        }
        return respond_plain(http::status::service_unavailable,
                             fmt::format("{} is scaled to zero (no web instances); serve it "
                                         "again with: deployctl scale web=1\n",
                                         app),
                             After::keep_alive);
    }
    if (accept.find("text/html") != std::string_view::npos) {
        return respond_plain(
            http::status::service_unavailable,
            fmt::format("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0} is "
                        "stopped</title></head>\n<body><h1>{0} is stopped</h1>\n<p>The app "
                        "was stopped with <code>deployctl stop</code>. Start it again with "
                        "<code>deployctl start</code> (or deploy it).</p></body></html>\n",
                        app),
            After::keep_alive, {}, "text/html; charset=utf-8");
    }
    respond_plain(http::status::service_unavailable,
                  fmt::format("{} is stopped; start it with: deployctl start\n", app),
                  After::keep_alive);
}

template <class ClientStream>
void Session<ClientStream>::respond_plain(http::status status, std::string body, After after,
                                          std::string_view location, std::string_view content_type,
                                          std::string_view retry_after) {
    const bool keep_alive = after == After::keep_alive && m_framing.keep_alive;
    const bool head =
        m_request && m_request->is_header_done() && m_request->get().method() == http::verb::head;
    m_plain = {};
    m_plain.result(status);
    m_stat_status = static_cast<unsigned>(status);
    m_plain.version(m_framing.version);
    if (!location.empty()) {
        m_plain.set(http::field::location, location);
    }
    m_plain.set(http::field::content_type, content_type);
    if (!retry_after.empty()) {
        m_plain.set(http::field::retry_after, retry_after);
    }
    if (m_probe) {
        m_plain.set(k_routed_field, routed_to());
    }
    m_plain.content_length(body.size());
    if (!head) {
        m_plain.body() = std::move(body);
    }
    m_plain.keep_alive(keep_alive);
    client_tcp().expires_after(k_client_timeout);
    http::async_write(
        m_client, m_plain,
        beast::bind_front_handler(&Session::on_plain_written, shared_from_this(), keep_alive));
}

template <class ClientStream>
void Session<ClientStream>::on_plain_written(bool keep_alive, error_code ec, std::size_t bytes) {
    m_stat_out += bytes;
    end_exchange(keep_alive && !ec);
}

template <class ClientStream> void Session<ClientStream>::end_exchange(bool keep_alive) {
    stat_end();
    if (m_hold_armed) { // the request was held, then released: its timer goes
        m_hold_armed = false;
        ++m_hold_seq;
        m_hold_timer->cancel();
    }
    m_table.reset();
    m_route = nullptr;
    m_probe = false;
    release_body_buffers();
    // Answered before its body was read to the end (413, 404, a static file,
    // a failed upstream): the rest of the body is not a request.
    const bool body_left = m_request && m_request->is_header_done() && !m_request->is_done();
    if (body_left) {
        return linger_close();
    }
    if (!keep_alive) {
        return end_connection();
    }
    read_request();
}

template <class ClientStream> void Session<ClientStream>::end_connection() {
    if constexpr (k_tls) {
        // A party closing a TLS connection sends close_notify first (RFC 8446
        // 6.1, RFC 5246 7.2.1): a client reading a response to the end of the
        // connection can tell that end from a cut. The client's own is not
        // waited for (SSL_shutdown then completes at once): it would only
        // hold the connection. Nothing is read now (the request is read to
        // its end), so the shutdown is the stream's only operation.
        if (client_tcp().socket().is_open()) {
            SSL_set_shutdown(m_client.native_handle(), SSL_RECEIVED_SHUTDOWN);
            client_tcp().expires_after(k_linger_timeout);
            return m_client.async_shutdown(
                [self = this->shared_from_this()](error_code) { self->close(); });
        }
    }
    close();
}

template <class ClientStream> void Session<ClientStream>::linger_close() {
    error_code ignored;
    client_tcp().socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    m_client_buffer.clear();
    on_linger_read(0, {}, 0);
}

template <class ClientStream>
void Session<ClientStream>::on_linger_read(std::size_t total, error_code ec, std::size_t bytes) {
    total += bytes;
    if (ec || total > k_linger_bytes) {
        return close();
    }
    if (m_chunk.size() < k_relay_chunk) {
        m_chunk.resize(k_relay_chunk);
    }
    if (total == 0 && bytes == 0) {
        client_tcp().expires_after(k_linger_timeout);
    }
    m_client.async_read_some(
        asio::buffer(m_chunk),
        beast::bind_front_handler(&Session::on_linger_read, shared_from_this(), total));
}

template <class ClientStream> void Session<ClientStream>::stat_begin() {
    stat_end(); // a request that never ended (cannot happen; no gauge leaks if it does)
    m_stat_app = m_route->app;
    m_stat_started = std::chrono::steady_clock::now();
    m_stat_status = 0;
    m_stat_out = 0;
    m_stat_release = m_route->release;
    m_tried = 0; // no upstream chosen yet
    m_worker.stats().request_started(m_stat_app);
    // Every routed request has an id; the app sees it in X-Request-Id.
    auto& request = m_request->get();
    const auto given = request.find(k_request_id_field);
    m_own_request_id = given == request.end() || !acceptable_request_id(given->value()) ||
                       request.count(k_request_id_field) != 1;
    if (m_own_request_id) {
        m_worker.request_ids().next(m_request_id); // sent in place of the client's
    } else {
        m_request_id.assign(given->value());
    }
}

template <class ClientStream> void Session<ClientStream>::stat_end() {
    if (m_stat_app.empty()) {
        return;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - m_stat_started).count();
    const auto method = m_request ? m_request->get().method_string() : std::string_view();
    m_worker.stats().request_ended(m_stat_app, method, static_cast<int>(m_stat_status), seconds,
                                   m_body_read, m_stat_out);
    if (m_split) [[unlikely]] {
        m_worker.stats().release_ended(m_stat_app + " " + m_stat_release, method,
                                       static_cast<int>(m_stat_status), seconds);
    }
    if (m_worker.logs_access()) {
        log_access(seconds, method);
    }
    m_stat_app.clear();
}

template <class ClientStream>
void Session<ClientStream>::log_access(double seconds, std::string_view method) {
    AccessRecord record;
    record.time = m_worker.access_clock().now();
    record.release = m_stat_release;
    // m_route is the request's until end_exchange (a session that ends
    // otherwise has none, and says no instance).
    if (m_route != nullptr && m_route->app == m_stat_app) {
        if (m_route->is_static()) {
            record.instance = "static";
        } else if (m_tried != 0 && m_index < m_route->upstreams.size()) {
            const auto& upstream = m_route->upstreams[m_index];
            record.instance = upstream.name;
            record.upstream = upstream.key;
        }
    }
    record.client = m_client_ip;
    record.method = method;
    if (m_request) {
        const auto& request = m_request->get();
        record.host = request[http::field::host];
        record.path = request.target();
    }
    record.status = static_cast<int>(m_stat_status);
    record.duration_ms = seconds * 1000;
    record.bytes_in = m_body_read;
    record.bytes_out = m_stat_out;
    record.request_id = m_request_id;
    m_worker.access().append(m_stat_app, record);
}

template <class ClientStream> std::string Session<ClientStream>::routed_to() const {
    return m_route ? m_route->app + " " + m_route->release : std::string("none");
}

template <class ClientStream> bool Session<ClientStream>::serve_acme_challenge() {
    const auto& request = m_request->get();
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
        return false;
    }
    const auto token = acme::http_token(request.target());
    if (token.empty()) {
        return false;
    }
    auto answer = acme::read_http_answer(m_worker.acme_http_dir(), token);
    if (!answer) {
        return false; // not the agent's: routed (an app may answer its own challenges)
    }
    m_probe = false;
    common::log_debug(fmt::format("ACME http-01 challenge {} answered to {}", token, m_client_ip));
    respond_plain(http::status::ok, std::move(*answer), After::keep_alive, {}, "text/plain");
    return true;
}

template <class ClientStream> bool Session<ClientStream>::redirect_to_https() {
    const auto& request = m_request->get();
    const auto target = request.target();
    // ACME http-01 challenges must be answered over plain HTTP.
    if (target.starts_with("/.well-known/acme-challenge/") || m_host.empty() ||
        !m_worker.tls()->certificates->covers(m_host)) {
        return false;
    }
    const unsigned port = m_worker.https_port();
    // 308: the client repeats the same method and body.
    respond_plain(http::status::permanent_redirect, {}, After::keep_alive,
                  port == 443 ? fmt::format("https://{}{}", m_host, target)
                              : fmt::format("https://{}:{}{}", m_host, port, target));
    return true;
}

} // namespace agent::proxy

#include <agent/proxy/session_forward.ipp>
#include <agent/proxy/session_static.ipp>
#include <agent/proxy/session_upgrade.ipp>

namespace agent::proxy {
template class Session<Stream>;
template class Session<TlsStream>;
} // namespace agent::proxy
