#pragma once
// Private to agent/api/connection.cpp and agent/api/server.cpp: the socket
// layer both use, and the entry point that serves one request whose head was
// already read (by the server's front door). Beast and Asio are here, so no
// other file includes this one.

#include <agent/api/connection.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <poll.h>

namespace agent::api {

namespace detail {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
} // namespace detail

// The socket as Beast's stream, with a deadline for each blocking read:
// Asio's blocking reads ignore SO_RCVTIMEO, so wait with poll() before
// reading. A TLS stream is layered on top of it, so that the handshake and
// every record read have the deadline too: OpenSSL only reads from here when
// the bytes it holds (already decrypted, SSL_pending) do not complete what was
// asked for. The asynchronous operations (the server's front door) go straight
// to the socket: the front door keeps its own timers.
class DeadlineSocket {
  public:
    using executor_type = detail::tcp::socket::executor_type;
    using lowest_layer_type = detail::tcp::socket::lowest_layer_type;
    using clock = std::chrono::steady_clock;

    DeadlineSocket(detail::tcp::socket& socket, std::chrono::milliseconds idle)
        : m_socket(&socket), m_idle(idle) {}
    executor_type get_executor() { return m_socket->get_executor(); }
    lowest_layer_type& lowest_layer() { return m_socket->lowest_layer(); }
    int native_handle() { return m_socket->native_handle(); }
    // Until clear_deadline(), reads also stop at `deadline` (the TLS handshake).
    void set_deadline(clock::time_point deadline) { m_deadline = deadline; }
    void clear_deadline() { m_deadline.reset(); }
    // Until clear_rate(), what is read must keep `bytes_per_second` on
    // average once `grace` has passed (a request body): a client that sends a
    // byte now and then is cut off instead of holding its thread.
    void require_rate(std::uint64_t bytes_per_second, std::chrono::milliseconds grace) {
        m_rate = Rate{clock::now() + grace, bytes_per_second, 0};
    }
    void clear_rate() { m_rate.reset(); }
    // Whether a read from the socket failed since clear_read_error(): tells a
    // client's error from the one of what its bytes were written to.
    bool read_failed() const { return m_read_failed; }
    void clear_read_error() { m_read_failed = false; }

    template <class Buffers> std::size_t read_some(const Buffers& buffers) {
        detail::beast::error_code ec;
        const auto n = read_some(buffers, ec);
        if (ec)
            throw detail::beast::system_error(ec);
        return n;
    }
    template <class Buffers>
    std::size_t read_some(const Buffers& buffers, detail::beast::error_code& ec) {
        auto wait = m_idle;
        const auto limit = [&](clock::time_point until) {
            wait = std::max(std::chrono::milliseconds(0),
                            std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                               until - clock::now())));
        };
        if (m_deadline)
            limit(*m_deadline);
        if (m_rate)
            limit(m_rate->start + std::chrono::milliseconds(m_rate->bytes * 1000 /
                                                            std::max<std::uint64_t>(1, m_rate->per_second)));
        pollfd p{m_socket->native_handle(), POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(wait.count()));
        if (ready == 0) {
            ec = detail::net::error::timed_out;
            m_read_failed = true;
            return 0;
        }
        const auto n = m_socket->read_some(buffers, ec);
        m_read_failed = m_read_failed || static_cast<bool>(ec);
        if (m_rate)
            m_rate->bytes += n;
        return n;
    }
    template <class Buffers> std::size_t write_some(const Buffers& buffers) {
        detail::beast::error_code ec;
        const auto n = write_some(buffers, ec);
        if (ec)
            throw detail::beast::system_error(ec);
        return n;
    }
    // A client that reads nothing for the idle timeout while the socket's
    // buffer is full is cut off: a write never holds its thread for longer.
    template <class Buffers>
    std::size_t write_some(const Buffers& buffers, detail::beast::error_code& ec) {
        pollfd p{m_socket->native_handle(), POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(m_idle.count())) == 0) {
            ec = detail::net::error::timed_out;
            return 0;
        }
        return m_socket->write_some(buffers, ec);
    }
    template <class Buffers, class Handler>
    auto async_read_some(const Buffers& buffers, Handler&& handler) {
        return m_socket->async_read_some(buffers, std::forward<Handler>(handler));
    }
    template <class Buffers, class Handler>
    auto async_write_some(const Buffers& buffers, Handler&& handler) {
        return m_socket->async_write_some(buffers, std::forward<Handler>(handler));
    }

  private:
    struct Rate {
        clock::time_point start; // when the grace ends
        std::uint64_t per_second;
        std::uint64_t bytes;
    };
    detail::tcp::socket* m_socket;
    std::chrono::milliseconds m_idle;
    std::optional<clock::time_point> m_deadline;
    std::optional<Rate> m_rate;
    bool m_read_failed = false;
};

using TlsStream = detail::net::ssl::stream<DeadlineSocket>;
using HeadParser = detail::http::request_parser<detail::http::empty_body>;

// What serving one request left behind.
struct RequestOutcome {
    bool keep_open = false;     // another request may follow on this connection
    bool authenticated = false; // the request named a verified token (or came on the unix socket)
    bool unread_body = false;   // closing: the client may still be sending a body nobody read
};

// Serves the request whose head `header` holds (read into `buffer`, which
// may hold more), body, handler and answer included. When the connection is
// not kept open and a body was left unread, the caller drains it (so that
// closing does not reset the connection before the client read the answer).
RequestOutcome serve_request(DeadlineSocket& stream, detail::beast::flat_buffer& buffer,
                             HeadParser& header, const Router& router,
                             const ConnectionOptions& options, const Peer& peer);
RequestOutcome serve_request(TlsStream& stream, detail::beast::flat_buffer& buffer,
                             HeadParser& header, const Router& router,
                             const ConnectionOptions& options, const Peer& peer);

// A fresh parser for a request head: header size limited, body limit left to
// the route (see connection.cpp).
void prepare_head_parser(HeadParser& parser);

} // namespace agent::api
