#pragma once
// One client connection: reads requests, routes each by its Host header
// against the table current at that moment, forwards it over a pooled
// upstream connection and streams the response back.

#include <agent/proxy/headers.hpp>
#include <agent/proxy/routes.hpp>
#include <agent/proxy/upstream_pool.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/serializer.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace agent::proxy {

class Worker;

class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(Socket socket, Worker& worker);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start() { read_request(); }
    // Graceful shutdown: closes the connection if it waits for a request.
    void close_if_idle();

  private:
    using error_code = boost::beast::error_code;

    // Client side (session.cpp).
    void read_request();
    void on_request_header(error_code ec, std::size_t bytes);
    void on_continue_sent(error_code ec, std::size_t bytes);
    void on_request_body(error_code ec, std::size_t bytes);
    void on_read_error(error_code ec);
    void dispatch();
    enum class After { keep_alive, close };
    void respond_plain(boost::beast::http::status status, std::string body, After after);
    void on_plain_written(bool keep_alive, error_code ec, std::size_t bytes);
    void end_exchange(bool keep_alive);
    void close();

    // A route to a [static] release (session_static.cpp).
    void serve_static();

    // Upstream side (session_forward.cpp).
    void forward();
    void connect_upstream();
    void on_upstream_connected(error_code ec);
    void write_upstream();
    void on_upstream_written(error_code ec, std::size_t bytes);
    void read_upstream_header();
    void on_upstream_header(error_code ec, std::size_t bytes);
    void upstream_failed(error_code ec, bool got_response_bytes);
    bool reroute();
    void on_client_header_written(error_code ec, std::size_t bytes); // bodiless responses
    void relay_body();
    void on_relay_read(error_code ec, std::size_t bytes);
    void on_relay_written(error_code ec, std::size_t bytes);
    void complete_exchange();

    Worker& m_worker;
    Stream m_client;
    boost::beast::flat_buffer m_client_buffer;
    std::string m_client_ip;
    std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> m_request;
    ClientFraming m_framing;
    bool m_idle = false; // waiting for the first byte of a request

    // The table that routed the current request: pinned until the response is
    // done, so a switch never moves a request that is already under way.
    std::shared_ptr<const RouteTable> m_table;
    const Route* m_route = nullptr;
    UpstreamPtr m_upstream;
    bool m_retried = false;
    std::optional<ResponseParser> m_response;
    std::optional<boost::beast::http::serializer<false, boost::beast::http::buffer_body>>
        m_serializer;
    std::vector<char> m_chunk; // body relay buffer, allocated once per connection
    // Serialized header of the message being written (see serialize_header);
    // for a response, emptied once it is out. Unused when m_serializer is.
    std::string m_head;

    std::string m_host;    // scratch: normalized Host of the current request
    std::string m_scratch; // scratch for header rewriting
    boost::beast::http::response<boost::beast::http::string_body> m_plain;
};

} // namespace agent::proxy
