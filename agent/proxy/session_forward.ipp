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
#include <limits>

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

template <class ClientStream>
void Session<ClientStream>::choose_upstream() {
    m_index = m_route->pick();
    m_tried = std::uint64_t{1} << m_index;
    m_sent = false;
}

template <class ClientStream>
void Session<ClientStream>::forward() {
    m_retried = false;
    choose_upstream();
    if (!m_upgrade.empty()) {
        return connect_upstream(); // its own connection: it never goes back to the pool
    }
    m_upstream = m_worker.pool().take(upstream().key);
    if (m_upstream) {
        return write_upstream();
    }
    connect_upstream();
}

template <class ClientStream>
void Session<ClientStream>::connect_upstream() {
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
    if (m_sent && !detail::idempotent(m_request->get().method())) {
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
    connect_upstream();
    return true;
}

template <class ClientStream>
void Session<ClientStream>::on_upstream_connected(error_code ec) {
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
        if (fail_over(ec, "cannot connect to")) {
            return;
        }
        common::log_warn(fmt::format("{} ({}): cannot connect to {}: {}", m_route->app,
                                     m_route->release, upstream().key, ec.message()));
        return respond_plain(http::status::bad_gateway,
                             fmt::format("upstream for {} is not answering\n", m_route->app),
                             After::keep_alive);
    }
    m_upstream->stream.socket().set_option(asio::ip::tcp::no_delay(true), ec);
    write_upstream();
}

template <class ClientStream>
void Session<ClientStream>::write_upstream() {
    // The body is buffered and Content-Length framed (prepare_upstream_request):
    // header and body go out in one write.
    const auto& request = m_request->get();
    serialize_header(request, m_head);
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(m_head),
                                                    asio::buffer(request.body())};
    m_upstream->stream.expires_after(m_route->read_timeout);
    m_sent = true;
    asio::async_write(m_upstream->stream, buffers,
                      beast::bind_front_handler(&Session::on_upstream_written, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_upstream_written(error_code ec, std::size_t) {
    if (ec) {
        return upstream_failed(ec, false);
    }
    read_upstream_header();
}

template <class ClientStream>
void Session<ClientStream>::read_upstream_header() {
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
template <class ClientStream>
bool Session<ClientStream>::reroute() {
    m_retried = true;
    m_table = m_worker.table();
    m_route = m_table->find(m_host);
    if (m_route == nullptr) {
        respond_plain(http::status::not_found, fmt::format("no app is deployed at {}\n", m_host),
                      After::keep_alive);
        return false;
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
    const bool reused = m_upstream && m_upstream->reused;
    m_upstream.reset();
    m_response.reset();
    if (reused && !got_response_bytes && !m_retried) {
        const auto* table = m_table.get();
        if (!reroute()) {
            return;
        }
        if (m_table.get() != table) {
            choose_upstream(); // a new table: its route balances afresh
        }
        common::log_debug(fmt::format("retrying on a fresh connection to {} after: {}",
                                      upstream().key, ec.message()));
        return connect_upstream();
    }
    if (!got_response_bytes && ec != beast::error::timeout &&
        fail_over(ec, "no response from")) {
        return;
    }
    common::log_warn(fmt::format("{} ({}): upstream {} failed: {}", m_route->app, m_route->release,
                                 upstream().key, ec.message()));
    if (ec == beast::error::timeout) {
        return respond_plain(http::status::gateway_timeout,
                             fmt::format("upstream for {} did not answer in time\n", m_route->app),
                             After::keep_alive);
    }
    respond_plain(http::status::bad_gateway,
                  fmt::format("upstream for {} is not answering\n", m_route->app),
                  After::keep_alive);
}

template <class ClientStream>
void Session<ClientStream>::on_client_header_written(error_code ec, std::size_t) {
    if (ec) {
        m_upstream.reset();
        return close();
    }
    complete_exchange();
}

template <class ClientStream>
void Session<ClientStream>::relay_body() {
    if (m_chunk.empty()) {
        m_chunk.resize(k_relay_chunk);
    }
    auto& body = m_response->get().body();
    body.data = m_chunk.data();
    body.size = m_chunk.size();
    m_upstream->stream.expires_after(m_route->read_timeout);
    http::async_read(m_upstream->stream, m_upstream->buffer, *m_response,
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
void Session<ClientStream>::on_relay_written(error_code ec, std::size_t) {
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

template <class ClientStream>
void Session<ClientStream>::complete_exchange() {
    const bool reusable =
        m_response->keep_alive() && m_upstream->buffer.size() == 0 && m_upgrade.empty();
    if (reusable && !m_worker.stopping()) {
        m_worker.pool().give_back(upstream().key, std::move(m_upstream));
    }
    m_upstream.reset();
    m_serializer.reset();
    m_response.reset();
    end_exchange(m_framing.keep_alive);
}

} // namespace agent::proxy
