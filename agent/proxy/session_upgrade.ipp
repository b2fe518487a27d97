// Upgraded connections (WebSocket): once the app answered 101 Switching
// Protocols to a request that asked for it, the proxy passes the 101 on and
// then relays raw bytes both ways, over the request's own upstream connection,
// until both sides closed (a side's end of stream shuts down the write side
// of the other), an error, or nothing moved for the route's websocket_idle.
// The connection never goes back to HTTP, and its upstream never to the pool.
// Part of session.cpp, which includes it and instantiates Session.
#pragma once
#include <agent/proxy/limits.hpp>
#include <agent/proxy/session.hpp>
#include <agent/proxy/worker.hpp>
#include <common/log.hpp>

#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <fmt/format.h>

namespace agent::proxy {

namespace detail {
// The peer closed its side (TLS: with or without close_notify).
inline bool end_of_stream(boost::system::error_code ec) {
    return ec == boost::asio::error::eof || ec == boost::asio::ssl::error::stream_truncated;
}
} // namespace detail

template <class ClientStream>
void Session<ClientStream>::open_tunnel() {
    auto& response = m_response->get();
    response.version(11);
    if (m_probe) {
        response.set(k_routed_field, routed_to());
    }
    // The app's 101 as it is (Connection, Upgrade, Sec-WebSocket-Accept...),
    // followed by whatever the app sent after it in the same read.
    serialize_header(response, m_head);
    m_stat_out += m_head.size(); // the 101's header: the request's answer
    const auto extra = m_upstream->buffer.data();
    m_head.append(static_cast<const char*>(extra.data()), extra.size());
    m_upstream->buffer.consume(extra.size());
    m_tunnel = std::make_unique<Tunnel>(m_client.get_executor());
    m_tunnel->idle = m_route->websocket_idle;
    m_tunnel->websocket = beast::iequals(m_upgrade, "websocket");
    m_tunnel->app = m_route->app;
    m_worker.stats().websocket(m_tunnel->app, +1);
    stat_end(); // the request ends with the 101; the connection is counted apart
    m_tunnel->frames.feed(m_head.data() + (m_head.size() - extra.size()), extra.size());
    common::log_debug(fmt::format("{} ({}): {} connection from {} upgraded to {}", m_route->app,
                                  m_route->release, upstream().key, m_client_ip, m_upgrade));
    // The upstream connection is this session's now: no route or table needed.
    m_response.reset();
    m_route = nullptr;
    m_table.reset();
    client_tcp().expires_after(k_client_timeout);
    asio::async_write(m_client, asio::buffer(m_head),
                      beast::bind_front_handler(&Session::on_tunnel_opened, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_tunnel_opened(error_code ec, std::size_t) {
    if (ec) {
        return close_tunnel();
    }
    m_head.clear();
    // The tunnel's own timer decides when it is idle: the streams' timeouts
    // would cut a direction that is quiet while the other one is busy.
    client_tcp().expires_never();
    m_upstream->stream.expires_never();
    m_tunnel->up.resize(k_tunnel_chunk);
    m_tunnel->down.resize(k_tunnel_chunk);
    m_tunnel->last_activity = std::chrono::steady_clock::now();
    arm_tunnel_timer();
    tunnel_read_upstream();
    if (m_client_buffer.size() > 0) {
        // Bytes the client sent right after its request (its first frames).
        asio::async_write(
            m_upstream->stream, m_client_buffer.data(),
            beast::bind_front_handler(&Session::on_tunnel_upstream_written, shared_from_this()));
        return;
    }
    tunnel_read_client();
}

template <class ClientStream>
void Session<ClientStream>::tunnel_read_client() {
    m_client.async_read_some(
        asio::buffer(m_tunnel->up),
        beast::bind_front_handler(&Session::on_tunnel_client_read, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_tunnel_client_read(error_code ec, std::size_t bytes) {
    if (m_tunnel->closed) {
        return;
    }
    if (ec) {
        if (detail::end_of_stream(ec)) {
            return tunnel_side_done(true);
        }
        return close_tunnel();
    }
    m_tunnel->last_activity = std::chrono::steady_clock::now();
    asio::async_write(
        m_upstream->stream, asio::buffer(m_tunnel->up.data(), bytes),
        beast::bind_front_handler(&Session::on_tunnel_upstream_written, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_tunnel_upstream_written(error_code ec, std::size_t) {
    if (m_tunnel->closed) {
        return;
    }
    if (ec) {
        return close_tunnel();
    }
    m_client_buffer.consume(m_client_buffer.size()); // the first write sent them
    m_tunnel->last_activity = std::chrono::steady_clock::now();
    tunnel_read_client();
}

template <class ClientStream>
void Session<ClientStream>::tunnel_read_upstream() {
    m_upstream->stream.async_read_some(
        asio::buffer(m_tunnel->down),
        beast::bind_front_handler(&Session::on_tunnel_upstream_read, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_tunnel_upstream_read(error_code ec, std::size_t bytes) {
    if (m_tunnel->closed) {
        return;
    }
    if (ec) {
        if (detail::end_of_stream(ec)) {
            return tunnel_side_done(false);
        }
        return close_tunnel();
    }
    m_tunnel->last_activity = std::chrono::steady_clock::now();
    if (m_tunnel->websocket) {
        m_tunnel->frames.feed(m_tunnel->down.data(), bytes);
    }
    m_tunnel->writing_client = true;
    asio::async_write(
        m_client, asio::buffer(m_tunnel->down.data(), bytes),
        beast::bind_front_handler(&Session::on_tunnel_client_written, shared_from_this()));
}

template <class ClientStream>
void Session<ClientStream>::on_tunnel_client_written(error_code ec, std::size_t) {
    m_tunnel->writing_client = false;
    if (m_tunnel->closed) {
        return;
    }
    if (ec) {
        return close_tunnel();
    }
    m_tunnel->last_activity = std::chrono::steady_clock::now();
    tunnel_read_upstream();
}

// One side closed: the other side's write half is shut down (it reads an end
// of stream and may still answer); both closed: the connection is over.
template <class ClientStream>
void Session<ClientStream>::tunnel_side_done(bool client_side) {
    error_code ignored;
    if (client_side) {
        m_tunnel->client_done = true;
        m_upstream->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    } else {
        m_tunnel->upstream_done = true;
        client_tcp().socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }
    if (m_tunnel->client_done && m_tunnel->upstream_done) {
        close_tunnel();
    }
}

template <class ClientStream>
void Session<ClientStream>::arm_tunnel_timer() {
    m_tunnel->timer.expires_at(m_tunnel->last_activity + m_tunnel->idle);
    m_tunnel->timer.async_wait([self = shared_from_this()](error_code ec) {
        auto& tunnel = *self->m_tunnel;
        if (ec || tunnel.closed) {
            return;
        }
        if (std::chrono::steady_clock::now() >= tunnel.last_activity + tunnel.idle) {
            common::log_debug(fmt::format("upgraded connection from {} idle for {} ms: closed",
                                          self->m_client_ip, tunnel.idle.count()));
            return self->close_tunnel(true);
        }
        self->arm_tunnel_timer(); // bytes moved meanwhile
    });
}

// Closes both sides; pending operations end aborted. When the proxy itself
// ends a WebSocket connection (`going_away`) and can put a frame between the
// app's, the client first gets a close frame 1001 "going away"; otherwise it
// sees the TCP connection end.
template <class ClientStream>
void Session<ClientStream>::close_tunnel(bool going_away) {
    bool close_frame = false;
    if (m_tunnel) {
        if (m_tunnel->closed) {
            return;
        }
        m_tunnel->closed = true;
        m_tunnel->timer.cancel();
        m_worker.stats().websocket(m_tunnel->app, -1);
        close_frame = going_away && m_tunnel->websocket && !m_tunnel->upstream_done &&
                      !m_tunnel->writing_client && m_tunnel->frames.at_boundary();
    }
    if (m_upstream) {
        error_code ignored;
        m_upstream->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        m_upstream->stream.close();
    }
    if (!close_frame) {
        return close();
    }
    client_tcp().expires_after(std::chrono::seconds(1));
    asio::async_write(m_client,
                      asio::buffer(k_websocket_going_away.data(), k_websocket_going_away.size()),
                      [self = shared_from_this()](error_code, std::size_t) { self->close(); });
}

} // namespace agent::proxy
