// Client side of a session: read a request, route it, answer errors.
#include <agent/proxy/limits.hpp>
#include <agent/proxy/session.hpp>
#include <agent/proxy/worker.hpp>

#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>

namespace agent::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
constexpr std::string_view k_continue = "HTTP/1.1 100 Continue\r\n\r\n";
} // namespace

Session::Session(Socket socket, Worker& worker) : m_worker(worker), m_client(std::move(socket)) {
    error_code ec;
    m_client.socket().set_option(asio::ip::tcp::no_delay(true), ec);
    auto peer = m_client.socket().remote_endpoint(ec);
    m_client_ip = ec ? "unknown" : peer.address().to_string();
    m_worker.add(this);
}

Session::~Session() {
    m_worker.remove(this);
}

void Session::close_if_idle() {
    if (m_idle) {
        close();
    }
}

void Session::close() {
    error_code ignored;
    m_client.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    m_client.close();
}

void Session::read_request() {
    if (m_worker.stopping() && m_client_buffer.size() == 0) {
        return close();
    }
    m_request.emplace();
    m_request->header_limit(k_header_limit);
    m_request->body_limit(k_request_body_limit);
    m_idle = m_client_buffer.size() == 0;
    m_client.expires_after(m_idle ? k_keep_alive_timeout : k_client_timeout);
    http::async_read_header(
        m_client, m_client_buffer, *m_request,
        beast::bind_front_handler(&Session::on_request_header, shared_from_this()));
}

void Session::on_request_header(error_code ec, std::size_t) {
    m_idle = false;
    if (ec) {
        return on_read_error(ec);
    }
    auto& request = m_request->get();
    m_framing = {request.version(), request.keep_alive() && !m_worker.stopping()};
    if (m_request->is_done()) {
        return dispatch();
    }
    m_client.expires_after(k_client_timeout);
    if (beast::iequals(request[http::field::expect], "100-continue")) {
        asio::async_write(
            m_client, asio::buffer(k_continue.data(), k_continue.size()),
            beast::bind_front_handler(&Session::on_continue_sent, shared_from_this()));
        return;
    }
    http::async_read(m_client, m_client_buffer, *m_request,
                     beast::bind_front_handler(&Session::on_request_body, shared_from_this()));
}

void Session::on_continue_sent(error_code ec, std::size_t) {
    if (ec) {
        return close();
    }
    http::async_read(m_client, m_client_buffer, *m_request,
                     beast::bind_front_handler(&Session::on_request_body, shared_from_this()));
}

void Session::on_request_body(error_code ec, std::size_t) {
    if (ec) {
        return on_read_error(ec);
    }
    dispatch();
}

void Session::on_read_error(error_code ec) {
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

void Session::dispatch() {
    auto& request = m_request->get();
    auto host = request[http::field::host];
    if (host.empty()) {
        return respond_plain(http::status::bad_request, "missing Host header\n", After::close);
    }
    normalize_host(host, m_host);
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
    if (m_route->is_static()) {
        return serve_static();
    }
    prepare_upstream_request(request, m_client_ip, m_scratch);
    forward();
}

void Session::respond_plain(http::status status, std::string body, After after) {
    const bool keep_alive = after == After::keep_alive && m_framing.keep_alive;
    const bool head =
        m_request && m_request->is_header_done() && m_request->get().method() == http::verb::head;
    m_plain = {};
    m_plain.result(status);
    m_plain.version(m_framing.version);
    m_plain.set(http::field::content_type, "text/plain; charset=utf-8");
    m_plain.content_length(body.size());
    if (!head) {
        m_plain.body() = std::move(body);
    }
    m_plain.keep_alive(keep_alive);
    m_client.expires_after(k_client_timeout);
    http::async_write(
        m_client, m_plain,
        beast::bind_front_handler(&Session::on_plain_written, shared_from_this(), keep_alive));
}

void Session::on_plain_written(bool keep_alive, error_code ec, std::size_t) {
    end_exchange(keep_alive && !ec);
}

void Session::end_exchange(bool keep_alive) {
    m_table.reset();
    m_route = nullptr;
    if (!keep_alive || m_worker.stopping()) {
        return close();
    }
    read_request();
}

} // namespace agent::proxy
