// Upstream side of a session: send the request over a pooled (or fresh)
// connection and stream the response back to the client.
// Part of session.cpp, which includes it and instantiates Session.
#pragma once
#include <agent/proxy/limits.hpp>
#include <agent/proxy/session.hpp>
#include <agent/proxy/worker.hpp>
#include <common/log.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <limits>
#include <sys/socket.h>

namespace agent::proxy {

namespace detail {
// RFC 9110 §9.2.2: sending these twice has the effect of sending them once.
inline bool idempotent(http::verb method) {
    switch (method) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::trace:
    case http::verb::put:
    case http::verb::delete_:
        return true;
    default:
        return false;
    }
}
} // namespace detail

namespace detail {
// A pooled connection the upstream closed while it was idle (its FIN or RST
// already arrived): not worth a request, which could then not be retried.
template <class S> inline bool closed_by_peer(S& socket) {
    char byte;
    const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}
} // namespace detail

template <class ClientStream> void Session<ClientStream>::choose_upstream() {
    m_index = m_route->pick();
    m_tried = std::uint64_t{1} << m_index;
}

template <class ClientStream> void Session<ClientStream>::forward() {
    m_retried = false;
    m_sent = false;
    choose_upstream();
    if (!m_upgrade.empty()) {
        return connect_upstream(); // its own connection: it never goes back to the pool
    }
    // A non-idempotent request (POST, PATCH) goes on a fresh connection: on a
    // pooled one the app may close while it is on its way, and it could then
    // be neither retried (it may have been read) nor answered but with a 502.
    // One idle for a while is checked first (a recv that peeks); one back in the pool
    // for less than k_peek_idle is used as it is: the check would cost a system call per
    // request under load, and a request that finds it closed is retried all the same.
    if (detail::idempotent(m_request->get().method())) {
        const auto now = std::chrono::steady_clock::now();
        while ((m_upstream = m_worker.pool().take(upstream().key)) &&
               now - m_upstream->idle_since >= k_peek_idle &&
               detail::closed_by_peer(m_upstream->stream.socket())) {
        }
    }
    if (m_upstream) {
        return write_upstream();
    }
    connect_upstream();
}

template <class ClientStream>
Attempt Session<ClientStream>::current_attempt(bool got_response_bytes, bool timed_out) const {
    Attempt a;
    a.idempotent = detail::idempotent(m_request->get().method());
    a.reused = m_upstream && m_upstream->reused;
    a.stale_retried = m_retried;
    a.request_written = m_sent;
    a.body_consumed = m_body_consumed;
    a.got_response_bytes = got_response_bytes;
    a.timed_out = timed_out;
    return a;
}

template <class ClientStream> void Session<ClientStream>::log_gateway_error(std::string line) {
    const auto verdict = gateway_log_limiter().admit(m_route->app);
    if (!verdict.log) {
        return;
    }
    if (verdict.suppressed > 0) {
        common::log_warn(fmt::format("{} ({}): ... {} more 502/504 lines suppressed", m_route->app,
                                     m_route->release, verdict.suppressed));
    }
    common::log_warn(line);
}

template <class ClientStream> void Session<ClientStream>::connect_upstream() {
    m_upstream = std::make_unique<UpstreamConnection>(m_client.get_executor());
    error_code ec;
    const Upstream& target = upstream();
    auto address = asio::ip::make_address(target.address, ec); // checked at load
    m_upstream->stream.expires_after(m_route->connect_timeout);
    m_upstream->stream.async_connect(
        asio::ip::tcp::endpoint(address, target.port),
        beast::bind_front_handler(&Session::on_upstream_connected, shared_from_this()));
}

// After upstream() failed: the request goes to the route's next upstream not
// tried yet, on a fresh connection, unless it may have reached the failed one
// and is not idempotent (a POST is never sent twice).
template <class ClientStream>
bool Session<ClientStream>::fail_over(error_code ec, std::string_view what) {
    if (!may_replay(current_attempt(false, false))) {
        return false;
    }
    auto next = m_route->next_untried(m_index, m_tried);
    if (!next) {
        return false;
    }
    common::log_warn(fmt::format("{} ({}): {} {}: {}; retrying on {}", m_route->app,
                                 m_route->release, what, upstream().key, ec.message(),
                                 m_route->upstreams[*next].key));
    m_index = *next;
    m_tried |= std::uint64_t{1} << m_index;
    m_worker.stats().retry(m_route->app);
    connect_upstream();
    return true;
}

template <class ClientStream> void Session<ClientStream>::on_upstream_connected(error_code ec) {
    if (ec && !m_retried && m_worker.table() != m_table) {
        // The old release is going away and the table has moved on: the
        // request has not been sent anywhere yet, so the new route takes it.
        m_upstream.reset();
        if (reroute()) {
            choose_upstream();
            connect_upstream();
        }
        return;
    }
    if (ec) {
        m_upstream.reset();
        m_route->mark_failed(m_index); // round robin skips it for a while
        m_worker.stats().connect_error(m_route->app);
        if (fail_over(ec, "cannot connect to")) {
            return;
        }
        log_gateway_error(fmt::format(
            "{} ({}): 502: cannot connect to {}: {}{}", m_route->app, m_route->release,
            upstream().key, ec.message(),
            ec == beast::error::timeout
                ? fmt::format(" (connect_timeout {}ms)", m_route->connect_timeout.count())
                : std::string()));
        return respond_plain(http::status::bad_gateway,
                             fmt::format("upstream for {} is not answering\n", m_route->app),
                             After::keep_alive);
    }
    m_upstream->stream.socket().set_option(asio::ip::tcp::no_delay(true), ec);
    write_upstream();
}

template <class ClientStream> void Session<ClientStream>::write_upstream() {
    // The header alone; the body follows as it arrives from the client.
    UpstreamRequest how;
    how.chunked = m_chunked_upstream;
    how.content_length = m_request->content_length().value_or(0);
    how.client_ip = m_client_ip;
    how.proto = k_tls ? "https" : "http";
    how.request_id = m_own_request_id ? std::string_view(m_request_id) : std::string_view();
    how.upgrade = m_upgrade;
    upstream_request_head(m_request->get(), how, m_head);
    m_upstream->stream.expires_after(m_route->read_timeout);
    asio::async_write(m_upstream->stream, asio::buffer(m_head),
                      beast::bind_front_handler(&Session::on_upstream_written, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_upstream_written(error_code ec, std::size_t bytes) {
    if (bytes > 0) {
        m_sent = true;
    }
    if (ec) {
        return upstream_failed(ec, false);
    }
    if (m_request->is_done()) {
        if (m_body_held > 0 || m_chunked_upstream) {
            // Sent again: the body held in m_chunk.
            return write_body(m_chunk.data(), m_body_held, true);
        }
        return read_upstream_header();
    }
    if (m_continue) {
        m_continue = false;
        client_tcp().expires_after(k_client_timeout);
        asio::async_write(
            m_client, asio::buffer(k_continue.data(), k_continue.size()),
            beast::bind_front_handler(&Session::on_continue_sent, shared_from_this()));
        return;
    }
    read_request_body();
}

template <class ClientStream> void Session<ClientStream>::read_request_body() {
    if (m_body_read == 0 && !m_pipe.buffers) {
        // The first piece: a small body ends in it, and stays there to be
        // sent again on a retry (m_body_held).
        if (m_chunk.size() < k_relay_chunk) {
            m_chunk.resize(k_relay_chunk);
        }
        m_pipe.read_into = m_chunk.data();
        m_pipe.read_size = m_chunk.size();
    } else {
        if (!m_pipe.buffers) {
            // A body longer than one read: two buffers, and reads of
            // k_body_chunk (Beast reads at most what the buffer has room for).
            m_pipe.buffers = std::make_unique_for_overwrite<char[]>(2 * k_body_chunk);
            m_client_buffer.reserve(k_body_chunk);
        }
        char* first = m_pipe.buffers.get();
        m_pipe.read_into = m_pipe.written == first ? first + k_body_chunk : first;
        m_pipe.read_size = k_body_chunk;
    }
    auto& body = m_request->get().body();
    body.data = m_pipe.read_into;
    body.size = m_pipe.read_size;
    m_pipe.reading = true;
    client_tcp().expires_after(k_client_timeout);
    http::async_read_some(m_client, m_client_buffer, *m_request,
                          beast::bind_front_handler(&Session::on_request_body, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_request_body(error_code ec, std::size_t) {
    using Fail = BodyPipe::Fail;
    m_pipe.reading = false;
    if (ec == http::error::need_buffer) {
        ec = {};
    }
    if (ec) {
        // The client went away (or sent a malformed body) in the middle: the
        // upstream has part of a request, its connection goes.
        const bool malformed = ec.category() == error_code(http::error::end_of_stream).category() &&
                               ec != http::error::end_of_stream &&
                               ec != http::error::partial_message;
        m_pipe.fail = malformed ? Fail::malformed : Fail::client_gone;
        return body_failed();
    }
    auto& body = m_request->get().body();
    const std::size_t n = m_pipe.read_size - body.size;
    const char* data = m_pipe.read_into;
    m_body_read += n;
    // A body read whole in one piece stays in m_chunk until the response
    // is relayed: it can be sent again. Any larger one cannot.
    const bool whole = m_request->is_done() && m_body_read == n;
    m_body_held = whole ? n : 0;
    if (n > 0 && !whole) {
        m_body_consumed = true;
    }
    if (m_route->max_body != 0 && m_body_read > m_route->max_body) {
        m_pipe.fail = Fail::too_large;
    }
    if (m_pipe.fail != Fail::none) {
        return body_failed(); // too large, or the upstream failed meanwhile
    }
    const bool done = m_request->is_done();
    if (n == 0 && !done) {
        return read_request_body();
    }
    if (done && m_pipe.buffers) {
        m_client_buffer.shrink_to_fit(); // no more body to read
    }
    if (m_pipe.writing) {
        m_pipe.has_ready = true;
        m_pipe.ready = data;
        m_pipe.ready_n = n;
        m_pipe.ready_done = done;
        return;
    }
    write_body(data, n, done);
    if (!done) {
        read_request_body(); // into the other buffer, while this one is written
    }
}

template <class ClientStream>
void Session<ClientStream>::write_body(const char* data, std::size_t n, bool done) {
    m_pipe.writing = true;
    m_pipe.written = data;
    m_upstream->stream.expires_after(m_route->read_timeout);
    if (!m_chunked_upstream) {
        asio::async_write(
            m_upstream->stream, asio::buffer(data, n),
            beast::bind_front_handler(&Session::on_request_body_written, shared_from_this()));
        return;
    }
    static constexpr std::string_view crlf = "\r\n";
    static constexpr std::string_view last = "0\r\n\r\n";
    m_chunk_head = n > 0 ? fmt::format("{:x}\r\n", n) : std::string();
    const std::array<asio::const_buffer, 4> buffers{
        asio::buffer(m_chunk_head), asio::buffer(data, n),
        n > 0 ? asio::buffer(crlf.data(), crlf.size()) : asio::const_buffer(),
        done ? asio::buffer(last.data(), last.size()) : asio::const_buffer()};
    asio::async_write(
        m_upstream->stream, buffers,
        beast::bind_front_handler(&Session::on_request_body_written, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_request_body_written(error_code ec, std::size_t) {
    using Fail = BodyPipe::Fail;
    m_pipe.writing = false;
    m_pipe.written = nullptr;
    if (ec && m_pipe.fail == Fail::none) {
        // Part of the body reached the upstream: never retried (retry.hpp).
        m_pipe.fail = Fail::upstream;
        m_pipe.upstream_error = ec;
    }
    if (m_pipe.fail != Fail::none) {
        return body_failed();
    }
    if (m_pipe.has_ready) {
        m_pipe.has_ready = false;
        write_body(m_pipe.ready, m_pipe.ready_n, m_pipe.ready_done);
        if (!m_pipe.ready_done) {
            read_request_body(); // into the buffer just written
        }
        return;
    }
    if (m_pipe.reading) {
        return; // the next piece is on its way
    }
    if (m_request->is_done()) {
        release_body_buffers();
        return read_upstream_header();
    }
    read_request_body();
}

template <class ClientStream> void Session<ClientStream>::body_failed() {
    using Fail = BodyPipe::Fail;
    if (m_pipe.reading || m_pipe.writing) {
        return; // the other side's operation ends first (a read gets its piece,
                // a write its bytes out, or either fails or times out)
    }
    const Fail fail = std::exchange(m_pipe.fail, Fail::none);
    m_pipe.has_ready = false;
    release_body_buffers();
    switch (fail) {
    case Fail::none:
        return;
    case Fail::upstream:
        return upstream_failed(m_pipe.upstream_error, false);
    case Fail::client_gone:
        m_upstream.reset();
        return close();
    case Fail::malformed:
        m_upstream.reset();
        return respond_plain(http::status::bad_request, "malformed request body\n", After::close);
    case Fail::too_large:
        // A chunked body past the limit: no response was started (the
        // upstream's is read once the body is sent), so the client gets 413;
        // the upstream, which has part of it, loses its connection.
        m_upstream.reset();
        common::log_info(fmt::format("{} ({}): 413 for a chunked body over max_body {} from {}",
                                     m_route->app, m_route->release, m_route->max_body,
                                     m_client_ip));
        return respond_plain(
            http::status::payload_too_large,
            fmt::format("request body too large (max_body is {} bytes)\n", m_route->max_body),
            After::close);
    }
}

template <class ClientStream> void Session<ClientStream>::release_body_buffers() {
    if (!m_pipe.buffers) {
        return;
    }
    m_pipe.buffers.reset();
    m_pipe.written = nullptr;
    m_pipe.has_ready = false;
    m_client_buffer.shrink_to_fit();
}

template <class ClientStream> void Session<ClientStream>::read_upstream_header() {
    m_relay_grown = false;
    m_response.emplace();
    m_response->header_limit(k_header_limit);
    m_response->body_limit(std::numeric_limits<std::uint64_t>::max());
    if (m_request->get().method() == http::verb::head) {
        m_response->skip(true);
    }
    http::async_read_header(
        m_upstream->stream, m_upstream->buffer, *m_response,
        beast::bind_front_handler(&Session::on_upstream_header, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_upstream_header(error_code ec, std::size_t) {
    if (ec) {
        return upstream_failed(ec, m_response->got_some());
    }
    const unsigned status = m_response->get().result_int();
    if (status >= 100 && status < 200 && status != 101) {
        return read_upstream_header(); // interim response (103 Early Hints): skip it
    }
    m_stat_status = status;
    if (status == 101) {
        if (!m_upgrade.empty()) {
            return open_tunnel();
        }
        // Switching without having been asked: nothing the client can use.
        return upstream_failed(boost::asio::error::invalid_argument, true);
    }
    m_framing.keep_alive = prepare_client_response(*m_response, m_framing);
    auto& response = m_response->get();
    if (m_probe) {
        response.set(k_routed_field, routed_to());
    }
    if (!m_canary_cookie.empty()) [[unlikely]] {
        response.insert(http::field::set_cookie, m_canary_cookie);
    }
    if (response.chunked()) {
        m_serializer.emplace(response); // chunk framing: Beast writes it
    } else {
        m_serializer.reset();
        serialize_header(response, m_head); // the body goes out as it comes
    }
    if (!m_response->is_done()) {
        // The header goes out together with the first piece of the body:
        // one write to the client for a small response, not two.
        return relay_body();
    }
    // No body (HEAD, 204, 304, empty): the header alone, and no chunked
    // terminator even if the upstream announced one.
    client_tcp().expires_after(k_client_timeout);
    if (!m_serializer) {
        asio::async_write(
            m_client, asio::buffer(m_head),
            beast::bind_front_handler(&Session::on_client_header_written, shared_from_this()));
        return;
    }
    http::async_write_header(
        m_client, *m_serializer,
        beast::bind_front_handler(&Session::on_client_header_written, shared_from_this()));
}

// Routes the current request again with the newest table, for its one
// retry. Returns false when the answer is already on its way: a 404 when the
// host is no longer routed, or the file when it now serves a static release.
template <class ClientStream> bool Session<ClientStream>::reroute() {
    m_retried = true;
    m_table = m_worker.table();
    m_route = m_table->find(m_host);
    if (m_route == nullptr) {
        respond_plain(http::status::not_found, fmt::format("no app is deployed at {}\n", m_host),
                      After::keep_alive);
        return false;
    }
    if (m_route->canary) {
        pick_canary_side();
    }
    if (m_route->stopped) {
        m_upstream.reset();
        respond_stopped();
        return false;
    }
    if (m_route->is_static()) {
        m_upstream.reset();
        serve_static();
        return false;
    }
    return true;
}

// Nothing reached the client yet, so it gets a clear answer. A pooled
// connection that failed before any response byte was most likely closed by
// the upstream while idle: the request is sent once more on a fresh one.
// Otherwise an idempotent request that got no response byte goes to the
// route's next upstream (each at most once), unless the upstream timed out.
template <class ClientStream>
void Session<ClientStream>::upstream_failed(error_code ec, bool got_response_bytes) {
    const Retry retry =
        retry_after_failure(current_attempt(got_response_bytes, ec == beast::error::timeout));
    m_upstream.reset();
    m_response.reset();
    if (retry == Retry::fresh) {
        const auto* table = m_table.get();
        if (!reroute()) {
            return;
        }
        if (m_table.get() != table) {
            choose_upstream(); // a new table: its route balances afresh
        }
        common::log_debug(fmt::format("retrying on a fresh connection to {} after: {}",
                                      upstream().key, ec.message()));
        m_worker.stats().retry(m_route->app);
        return connect_upstream();
    }
    if (retry == Retry::next_upstream && fail_over(ec, "no response from")) {
        return;
    }
    if (ec == beast::error::timeout) {
        log_gateway_error(fmt::format(
            "{} ({}): 504: upstream {} did not answer within read_timeout "
            "{}ms",
            m_route->app, m_route->release, upstream().key, m_route->read_timeout.count()));
        return respond_plain(http::status::gateway_timeout,
                             fmt::format("upstream for {} did not answer in time\n", m_route->app),
                             After::keep_alive);
    }
    log_gateway_error(fmt::format("{} ({}): 502: upstream {} failed: {}", m_route->app,
                                  m_route->release, upstream().key, ec.message()));
    respond_plain(http::status::bad_gateway,
                  fmt::format("upstream for {} is not answering\n", m_route->app),
                  After::keep_alive);
}

template <class ClientStream>
void Session<ClientStream>::on_client_header_written(error_code ec, std::size_t bytes) {
    m_stat_out += bytes; // an answer without a body (HEAD, 204, 304): its header is all
    if (ec) {
        m_upstream.reset();
        return close();
    }
    complete_exchange();
}

template <class ClientStream> void Session<ClientStream>::relay_body() {
    if (m_chunk.empty()) {
        m_chunk.resize(k_relay_chunk);
    }
    const bool header_sent = m_serializer ? m_serializer->is_header_done() : m_head.empty();
    if (header_sent && !m_relay_grown) {
        // A body that did not come in one read: reads of k_body_chunk from
        // now on (Beast reads at most what the buffer has room for), until
        // the response is done.
        m_upstream->buffer.reserve(k_body_chunk);
        m_relay_grown = true;
    }
    auto& body = m_response->get().body();
    body.data = m_chunk.data();
    body.size = m_chunk.size();
    m_upstream->stream.expires_after(m_route->read_timeout);
    // One read at a time (not async_read, which fills the buffer first): a
    // server-sent event reaches the client as soon as the upstream sends it.
    http::async_read_some(m_upstream->stream, m_upstream->buffer, *m_response,
                          beast::bind_front_handler(&Session::on_relay_read, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_relay_read(error_code ec, std::size_t) {
    if (ec == http::error::need_buffer) {
        ec = {};
    }
    const bool header_sent = m_serializer ? m_serializer->is_header_done() : m_head.empty();
    if (ec && !header_sent) {
        m_serializer.reset();
        return upstream_failed(ec, true);
    }
    if (ec) {
        // The header is out already: all we can do is cut the client off so
        // it sees a truncated response rather than a wrong one.
        m_upstream.reset();
        return close();
    }
    auto& body = m_response->get().body();
    body.size = m_chunk.size() - body.size;
    body.data = m_chunk.data();
    body.more = !m_response->is_done();
    if (body.size == 0 && body.more) {
        return relay_body(); // a chunk header or extension, no data yet
    }
    client_tcp().expires_after(k_client_timeout);
    if (!m_serializer) {
        // The header (until it is out) and this piece of the body, in one write.
        const std::array<asio::const_buffer, 2> buffers{asio::buffer(m_head),
                                                        asio::buffer(body.data, body.size)};
        asio::async_write(
            m_client, buffers,
            beast::bind_front_handler(&Session::on_relay_written, shared_from_this()));
        return;
    }
    http::async_write(m_client, *m_serializer,
                      beast::bind_front_handler(&Session::on_relay_written, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_relay_written(error_code ec, std::size_t bytes) {
    m_stat_out += bytes;
    if (ec == http::error::need_buffer) {
        ec = {};
    }
    if (ec) {
        m_upstream.reset();
        return close();
    }
    if (!m_serializer) {
        m_head.clear();
    }
    if (m_response->is_done() || (m_serializer && m_serializer->is_done())) {
        return complete_exchange();
    }
    relay_body();
}

template <class ClientStream> void Session<ClientStream>::complete_exchange() {
    const bool reusable =
        m_response->keep_alive() && m_upstream->buffer.size() == 0 && m_upgrade.empty();
    if (m_relay_grown) {
        m_upstream->buffer.shrink_to_fit();
        m_relay_grown = false;
    }
    if (reusable && !m_worker.stopping()) {
        m_worker.pool().give_back(upstream().key, std::move(m_upstream));
    }
    m_upstream.reset();
    m_serializer.reset();
    m_response.reset();
    end_exchange(m_framing.keep_alive);
}

} // namespace agent::proxy
