// Static side of a session: a route to a [static] release is answered from
// its files (static_files.cpp decides what; this writes it to the client).
// Part of session.cpp, which includes it and instantiates Session.
#pragma once
#include <agent/proxy/limits.hpp>
#include <agent/proxy/session.hpp>
#include <agent/proxy/static_files.hpp>

#include <boost/beast/core/file_posix.hpp>
#include <boost/beast/http/basic_file_body.hpp>
#include <boost/beast/http/write.hpp>

namespace agent::proxy {

namespace {

// A byte range of an already open file, as a beast File: basic_file_body
// sends size() bytes from the current position, so a range is a seek and a
// shorter size. Read-only; it never opens anything by name.
class RangeFile {
  public:
    using error_code = beast::error_code;

    void adopt(FileHandle file, std::uint64_t offset, std::uint64_t length, error_code& ec) {
        m_file.native_handle(file.release());
        m_length = length;
        m_file.seek(offset, ec);
    }
    bool is_open() const { return m_file.is_open(); }
    void close(error_code& ec) { m_file.close(ec); }
    void open(char const*, beast::file_mode, error_code& ec) {
        ec = make_error_code(beast::errc::operation_not_supported);
    }
    std::uint64_t size(error_code& ec) const {
        ec = {};
        return m_length;
    }
    std::uint64_t pos(error_code& ec) const { return m_file.pos(ec); }
    void seek(std::uint64_t offset, error_code& ec) { m_file.seek(offset, ec); }
    std::size_t read(void* buffer, std::size_t n, error_code& ec) const {
        return m_file.read(buffer, n, ec);
    }
    std::size_t write(void const*, std::size_t, error_code& ec) {
        ec = make_error_code(beast::errc::operation_not_supported);
        return 0;
    }

  private:
    beast::file_posix m_file;
    std::uint64_t m_length = 0;
};

using FileResponse = http::response<http::basic_file_body<RangeFile>>;
using TextResponse = http::response<http::string_body>;

template <class Response>
void set_header(Response& response, const StaticReply& reply, unsigned version, bool keep_alive) {
    response.result(reply.status);
    response.version(version);
    for (const auto& [name, value] : reply.headers) {
        response.set(name, value);
    }
    response.keep_alive(keep_alive);
}

} // namespace

template <class ClientStream>
void Session<ClientStream>::serve_static() {
    const auto& request = m_request->get();
    const bool head = request.method() == http::verb::head;
    StaticReply reply = agent::proxy::serve_static(
        {m_route->static_root, m_route->spa},
        {request.method_string(), request.target(), request[http::field::if_none_match],
         request[http::field::if_modified_since], request[http::field::range],
         request[http::field::if_range], request[http::field::accept_encoding]});
    if (m_probe) {
        reply.headers.emplace_back(k_routed_field, routed_to());
    }
    const bool keep_alive = m_framing.keep_alive;
    auto send = [this, keep_alive](auto response) {
        m_stat_status = response.result_int(); // counted and logged as a proxied answer is
        auto held = std::make_shared<decltype(response)>(std::move(response));
        client_tcp().expires_after(k_client_timeout);
        http::async_write(
            m_client, *held,
            [self = shared_from_this(), held, keep_alive](error_code ec, std::size_t bytes) {
                self->m_stat_out += bytes;
                self->end_exchange(keep_alive && !ec);
            });
    };
    if (reply.file && !head) {
        FileResponse response;
        set_header(response, reply, m_framing.version, keep_alive);
        RangeFile file;
        error_code ec;
        file.adopt(std::move(reply.file), reply.offset, reply.length, ec);
        if (!ec) {
            response.body().reset(std::move(file), ec);
        }
        if (!ec) {
            response.content_length(reply.length);
            return send(std::move(response));
        }
        reply = StaticReply{};
        reply.status = 500;
        reply.headers = {{"Content-Type", "text/plain; charset=utf-8"}};
        reply.body = "cannot read the file\n";
    }
    TextResponse response;
    set_header(response, reply, m_framing.version, keep_alive);
    if (reply.file) { // HEAD: the header a GET would get, no body
        response.content_length(reply.length);
    } else if (reply.status != 304) {
        response.content_length(reply.body.size());
        if (!head) {
            response.body() = std::move(reply.body);
        }
    }
    send(std::move(response));
}

} // namespace agent::proxy
