#include <agent/api/connection.hpp>
#include <agent/api/connection_impl.hpp>
#include <agent/api/errors.hpp>
#include <agent/api/tls.hpp>
#include <common/ascii.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>
#include <common/version.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <limits>
#include <memory>
#include <optional>
#include <poll.h>
#include <sys/socket.h>
#include <type_traits>
#include <zstd.h>

namespace agent::api {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

tcp protocol_of(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0 &&
        address.ss_family == AF_INET6)
        return tcp::v6();
    return tcp::v4();
}

DeadlineSocket& layer_of(DeadlineSocket& stream) {
    return stream;
}
DeadlineSocket& layer_of(TlsStream& stream) {
    return stream.next_layer();
}

// Writes NDJSON lines as HTTP chunks.
template <class Stream> class ChunkSink : public StreamSink {
  public:
    ChunkSink(Stream& stream, int fd) : m_stream(stream), m_fd(fd) {}

    bool write(std::string_view line) override {
        if (m_broken)
            return false;
        std::string data(line);
        data += '\n';
        beast::error_code ec;
        net::write(m_stream, http::make_chunk(net::buffer(data)), ec);
        m_broken = static_cast<bool>(ec);
        return !m_broken;
    }

    // The client is gone when the socket reports hang-up or end of input.
    bool alive() override {
        if (m_broken)
            return false;
        pollfd p{m_fd, POLLIN | POLLRDHUP, 0};
        if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
            m_broken = true;
        return !m_broken;
    }

    bool finish() {
        if (m_broken)
            return false;
        beast::error_code ec;
        net::write(m_stream, http::make_chunk_last(), ec);
        return !ec;
    }

  private:
    Stream& m_stream;
    int m_fd;
    bool m_broken = false;
};

// Beast reads a body into the connection's buffer as much as the buffer holds (at least 512
// bytes, at most 64 KiB): grown to that once, a body of megabytes takes one read per 64 KiB
// instead of one per kilobyte of the head's buffer (and a poll before each).
void reserve_for_body(beast::flat_buffer& buffer) {
    constexpr std::size_t k_body_read = 64 * 1024;
    if (buffer.capacity() < k_body_read)
        buffer.reserve(k_body_read);
}

// A BodyKind::stream body, read through a buffer_body parser into the handler's buffer.
template <class Stream> class StreamBody final : public BodySource {
  public:
    StreamBody(Stream& stream, beast::flat_buffer& buffer,
               http::request_parser<http::empty_body>& header, std::uint64_t limit)
        : m_stream(stream), m_buffer(buffer), m_parser(std::move(header)) {
        m_parser.body_limit(limit);
        reserve_for_body(m_buffer);
    }

    long read(char* data, std::size_t size) override {
        if (m_error)
            return -1;
        while (!m_parser.is_done()) {
            auto& body = m_parser.get().body();
            body.data = data;
            body.size = size;
            body.more = true;
            beast::error_code ec;
            http::read_some(m_stream, m_buffer, m_parser, ec);
            if (ec == http::error::need_buffer)
                ec = {};
            if (ec) {
                m_error = ec;
                return -1;
            }
            if (const auto got = size - m_parser.get().body().size; got > 0)
                return static_cast<long>(got);
        }
        return 0;
    }
    bool done() const { return m_parser.is_done(); }
    const beast::error_code& error() const { return m_error; }

  private:
    Stream& m_stream;
    beast::flat_buffer& m_buffer;
    http::request_parser<http::buffer_body> m_parser;
    beast::error_code m_error;
};

// Stream: DeadlineSocket (plain) or TlsStream over it; all I/O goes through it.
template <class Stream> class Connection {
  public:
    Connection(Stream& stream, beast::flat_buffer& buffer, const Router& router,
               const ConnectionOptions& options, const Peer& peer)
        : m_stream(stream), m_fd(layer_of(stream).native_handle()), m_router(router),
          m_options(options), m_peer(peer), m_buffer(buffer) {}

    // Reads the next request's head; false when the connection should close.
    bool read_head(HeadParser& header);
    // Serves the request whose head `header` holds; false when the
    // connection should close.
    bool serve(HeadParser& header);
    // Whether the last request named a verified token.
    bool authenticated() const { return m_authenticated; }
    // Whether the client may still be sending a body nobody read.
    bool unread_body() const { return m_unread_body; }
    // Reads and drops what the client still sends (an unread request body)
    // for a moment, so that closing does not reset the connection before the
    // client has read the answer.
    void drain_input();

  private:
    bool read_body(http::request_parser<http::empty_body>& header, const Route& route,
                   Request& request);
    bool read_json_body(http::request_parser<http::empty_body>& header, Request& request,
                        std::uint64_t limit);
    bool read_file_body(http::request_parser<http::empty_body>& header, Request& request);
    // Calls a BodyKind::stream route's handler with the body to read as it arrives.
    bool serve_stream(http::request_parser<http::empty_body>& header, const Route& route,
                      Request& request, bool keep_alive);
    Response call(const Route& route, const Request& request);
    bool send(const Response& response, bool keep_alive);
    bool send_stream(const Response& response, bool keep_alive);
    // Records the answer with the gate, then sends it.
    bool answer(const Request& request, const Response& response, bool keep_alive);
    void send_continue_if_expected(const http::request_parser<http::empty_body>& header);

    Stream& m_stream;
    int m_fd; // for poll(): has the client gone away?
    const Router& m_router;
    const ConnectionOptions& m_options;
    const Peer& m_peer;
    beast::flat_buffer& m_buffer;
    unsigned m_version = 11;
    bool m_authenticated = false;
    std::optional<Response> m_body_error; // set when a body could not be read
    bool m_unread_body = false;           // closing with a body left unread
};

template <class Message> void set_common_headers(Message& message, const Response& response) {
    message.set(http::field::server, std::string("deploy-agent/") + common::version());
    message.set(http::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers)
        message.set(name, value);
}

// The connection after a 101: bytes the head's read left in `buffer` come
// first, then the stream's.
template <class Stream> class UpgradedConnection final : public Duplex {
  public:
    UpgradedConnection(Stream& stream, beast::flat_buffer& buffer, int fd)
        : m_stream(stream), m_buffer(buffer), m_fd(fd) {}

    long read(char* data, std::size_t size, std::chrono::milliseconds timeout) override {
        if (m_buffer.size() > 0) {
            const auto n = net::buffer_copy(net::buffer(data, size), m_buffer.data());
            m_buffer.consume(n);
            return static_cast<long>(n);
        }
        if (!pending()) {
            pollfd p{m_fd, POLLIN, 0};
            const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
            if (ready == 0)
                return -2;
            if (ready < 0)
                return errno == EINTR ? -2 : -1;
        }
        beast::error_code ec;
        const auto n = m_stream.read_some(net::buffer(data, size), ec);
        if (ec == net::error::eof || ec == net::ssl::error::stream_truncated)
            return 0;
        if (ec)
            return -1;
        return static_cast<long>(n);
    }
    bool pending() override {
        if (m_buffer.size() > 0)
            return true;
        if constexpr (std::is_same_v<Stream, TlsStream>)
            return SSL_pending(m_stream.native_handle()) > 0;
        return false;
    }
    int fd() const override { return m_fd; }
    bool write(std::string_view bytes) override {
        beast::error_code ec;
        net::write(m_stream, net::buffer(bytes.data(), bytes.size()), ec);
        return !ec;
    }

  private:
    Stream& m_stream;
    beast::flat_buffer& m_buffer;
    int m_fd;
};

template <class Stream> bool Connection<Stream>::send(const Response& response, bool keep_alive) {
    if (response.stream)
        return send_stream(response, keep_alive);
    if (response.upgrade) {
        http::response<http::empty_body> message{http::status::switching_protocols, m_version};
        message.set(http::field::server, std::string("deploy-agent/") + common::version());
        message.set(http::field::connection, "Upgrade");
        message.set(http::field::upgrade, response.upgrade_protocol);
        beast::error_code ec;
        http::write(m_stream, message, ec);
        if (ec)
            return false;
        UpgradedConnection<Stream> duplex(m_stream, m_buffer, m_fd);
        try {
            response.upgrade(duplex);
        } catch (const std::exception& error) {
            common::log_error(fmt::format("upgraded connection failed: {}", error.what()));
        }
        return false;
    }
    http::response<http::string_body> message{static_cast<http::status>(response.status),
                                              m_version};
    set_common_headers(message, response);
    message.keep_alive(keep_alive);
    message.body() = response.body;
    if (!message.body().empty() && message.body().back() != '\n')
        message.body() += '\n';
    message.prepare_payload();
    beast::error_code ec;
    http::write(m_stream, message, ec);
    return !ec && keep_alive;
}

template <class Stream>
bool Connection<Stream>::send_stream(const Response& response, bool keep_alive) {
    http::response<http::empty_body> message{static_cast<http::status>(response.status), m_version};
    set_common_headers(message, response);
    message.set(http::field::cache_control, "no-cache");
    message.keep_alive(keep_alive);
    message.chunked(true);
    http::response_serializer<http::empty_body> serializer{message};
    beast::error_code ec;
    http::write_header(m_stream, serializer, ec);
    if (ec)
        return false;
    ChunkSink<Stream> sink(m_stream, m_fd);
    try {
        response.stream(sink);
    } catch (const std::exception& error) {
        common::log_error(fmt::format("stream failed: {}", error.what()));
        return false; // the chunked body is incomplete: the client sees a broken stream
    }
    return sink.finish() && keep_alive;
}

template <class Stream>
void Connection<Stream>::send_continue_if_expected(
    const http::request_parser<http::empty_body>& header) {
    if (!beast::iequals(header.get()[http::field::expect], "100-continue"))
        return;
    http::response<http::empty_body> message{http::status::continue_, m_version};
    beast::error_code ec;
    http::write(m_stream, message, ec); // a failure shows on the next read
}

// Beast checks a Content-Length against the body limit only while parsing the
// header, before the route (and so the limit) is known: check it here.
std::optional<Response> check_length(const http::request_parser<http::empty_body>& header,
                                     std::uint64_t limit) {
    const auto length = header.content_length();
    if (!length || *length <= limit)
        return std::nullopt;
    return error_response(
        413, "too_large",
        fmt::format("body of {} bytes is larger than the limit of {} bytes", *length, limit));
}

// A zstd-compressed body, inflated up to `limit` bytes (the error: "too large", or
// what zstd said).
struct Inflated {
    std::optional<std::string> text;
    std::string why;
    explicit operator bool() const { return text.has_value(); }
    std::string& operator*() { return *text; }
    const std::string& error() const { return why; }
};
Inflated zstd_inflate(std::string_view compressed, std::uint64_t limit) {
    std::unique_ptr<ZSTD_DStream, decltype(&ZSTD_freeDStream)> stream(ZSTD_createDStream(),
                                                                      ZSTD_freeDStream);
    if (!stream)
        return {std::nullopt, "cannot decompress the body: out of memory"};
    std::string out;
    ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
    char chunk[65536];
    std::size_t last = 1;
    while (in.pos < in.size || last != 0) {
        ZSTD_outBuffer piece{chunk, sizeof chunk, 0};
        last = ZSTD_decompressStream(stream.get(), &piece, &in);
        if (ZSTD_isError(last))
            return {std::nullopt,
                    std::string("the zstd body does not decompress: ") + ZSTD_getErrorName(last)};
        out.append(chunk, piece.pos);
        if (out.size() > limit)
            return {std::nullopt, "too large"};
        if (piece.pos == 0 && in.pos == in.size)
            break;
    }
    if (last != 0)
        return {std::nullopt, "the zstd body is cut short"};
    return {std::move(out), ""};
}

Response too_large(std::uint64_t limit) {
    return error_response(413, "too_large", fmt::format("body is larger than {} bytes", limit));
}

// A body that keeps less than the minimum rate (or stalls) is cut off: a
// client sending a byte now and then would otherwise hold its thread.
Response too_slow(const ConnectionOptions& options) {
    return error_response(
        408, "too_slow",
        fmt::format("the request body arrived slower than {} bytes/s", options.min_body_rate));
}

template <class Stream>
bool Connection<Stream>::read_json_body(http::request_parser<http::empty_body>& header,
                                        Request& request, std::uint64_t limit) {
    http::request_parser<http::string_body> parser{std::move(header)};
    parser.body_limit(limit);
    beast::error_code ec;
    if (!parser.is_done())
        http::read(m_stream, m_buffer, parser, ec);
    if (ec == http::error::body_limit) {
        m_body_error = too_large(limit);
        return true;
    }
    if (ec == net::error::timed_out) {
        m_body_error = too_slow(m_options);
        return true;
    }
    if (ec)
        return false;
    request.body = std::move(parser.get().body());
    // A client may compress a large JSON body (deployctl: the tree nodes of an upload).
    const auto encoding = parser.get()[http::field::content_encoding];
    if (encoding.empty() || beast::iequals(encoding, "identity"))
        return true;
    if (!beast::iequals(encoding, "zstd")) {
        m_body_error =
            error_response(415, "unsupported_encoding",
                           fmt::format("Content-Encoding {} is not supported (zstd or none)",
                                       std::string_view(encoding.data(), encoding.size())));
        return true;
    }
    auto plain = zstd_inflate(request.body, limit);
    if (!plain)
        m_body_error = plain.error() == "too large"
                           ? too_large(limit)
                           : error_response(400, "bad_request", plain.error());
    else
        request.body = std::move(*plain);
    return true;
}

template <class Stream>
bool Connection<Stream>::read_file_body(http::request_parser<http::empty_body>& header,
                                        Request& request) {
    const auto limit = m_options.max_file_body;
    http::request_parser<http::file_body> parser{std::move(header)};
    parser.body_limit(limit);
    request.body_file = m_options.temp_path();
    // The error that stops a read is the client's (the stream) or the disk's
    // (the file): only the disk's gets an answer, one that says so.
    const auto cannot_store = [&](const beast::error_code& error) {
        const bool system = error.category() == boost::system::system_category();
        const auto why = system ? common::os_error_text(error.value()) : error.message();
        return error_response(common::make_error(
            system ? common::io_error_kind(error.value()) : common::ErrorKind::io,
            fmt::format("cannot store the uploaded body in {}: {}", request.body_file.string(),
                        why)));
    };
    beast::error_code ec;
    parser.get().body().open(request.body_file.c_str(), beast::file_mode::write, ec);
    if (ec) {
        m_body_error = cannot_store(ec);
        return true;
    }
    auto& layer = layer_of(m_stream);
    layer.clear_read_error();
    reserve_for_body(m_buffer);
    if (!parser.is_done())
        http::read(m_stream, m_buffer, parser, ec);
    parser.get().body().close();
    if (ec == http::error::body_limit)
        m_body_error = too_large(limit);
    else if (ec == net::error::timed_out)
        m_body_error = too_slow(m_options);
    else if (ec && !layer.read_failed() && ec.category() == boost::system::system_category())
        m_body_error = cannot_store(ec); // the socket read fine: the file write failed
    return !ec || m_body_error;
}

// The most a route's body may hold: requests that need no body (GET, DELETE)
// and small_json routes get k_max_small_body, manifests k_max_json_body.
std::uint64_t body_limit(const Route& route, std::uint64_t max_file_body) {
    if (route.body == BodyKind::file || route.body == BodyKind::stream)
        return max_file_body;
    if (route.body == BodyKind::small_json || route.method == "GET" || route.method == "DELETE")
        return k_max_small_body;
    if (route.body == BodyKind::hook)
        return k_max_hook_body;
    return k_max_json_body;
}

template <class Stream>
bool Connection<Stream>::read_body(http::request_parser<http::empty_body>& header,
                                   const Route& route, Request& request) {
    const auto limit = body_limit(route, m_options.max_file_body);
    if ((m_body_error = check_length(header, limit)))
        return true; // before "100 Continue"
    if (route.body == BodyKind::file && m_options.disk_check && header.content_length())
        if (auto room = m_options.disk_check(*header.content_length()); !room) {
            m_body_error = error_response(room.error());
            return true; // before "100 Continue" too
        }
    send_continue_if_expected(header);
    auto& layer = layer_of(m_stream);
    layer.require_rate(m_options.min_body_rate, m_options.body_grace);
    const bool read = route.body == BodyKind::file ? read_file_body(header, request)
                                                   : read_json_body(header, request, limit);
    layer.clear_rate();
    return read;
}

template <class Stream>
bool Connection<Stream>::serve_stream(http::request_parser<http::empty_body>& header,
                                      const Route& route, Request& request, bool keep_alive) {
    const auto limit = body_limit(route, m_options.max_file_body);
    if (auto refused = check_length(header, limit)) // before "100 Continue"
        return answer(request, *refused, false);
    send_continue_if_expected(header);
    auto& layer = layer_of(m_stream);
    layer.clear_read_error();
    layer.require_rate(m_options.min_body_rate, m_options.body_grace);
    StreamBody<Stream> body(m_stream, m_buffer, header, limit);
    request.body_source = &body;
    auto response = call(route, request);
    request.body_source = nullptr;
    layer.clear_rate();
    if (body.error() == http::error::body_limit)
        return answer(request, too_large(limit), false);
    if (body.error() == net::error::timed_out)
        return answer(request, too_slow(m_options), false);
    if (body.error())
        return false; // the client went away: nobody to answer
    // A handler that answered before the end of the body (a bad frame): what is left is
    // drained for a moment, and the connection closes.
    m_unread_body = !body.done();
    return answer(request, response, keep_alive && !m_unread_body);
}

template <class Stream>
Response Connection<Stream>::call(const Route& route, const Request& request) {
    try {
        return route.handler(request);
    } catch (const std::exception& error) {
        common::log_error(fmt::format("{} {}: {}", request.method, request.path, error.what()));
        return error_response(500, "internal", error.what());
    }
}

void remove_file(const std::filesystem::path& path) {
    if (path.empty())
        return;
    std::error_code ec;
    std::filesystem::remove(path, ec); // handlers move what they keep; this is a leftover
}

template <class Stream>
bool Connection<Stream>::answer(const Request& request, const Response& response, bool keep_alive) {
    if (m_options.gate)
        m_options.gate->record(request, response);
    return send(response, keep_alive);
}

// On the descriptor itself: over TLS the dropped bytes are records nobody reads.
template <class Stream> void Connection<Stream>::drain_input() {
    if (!m_unread_body)
        return;
    ::shutdown(m_fd, SHUT_WR);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    std::size_t dropped = 0;
    char scratch[16384];
    while (dropped < (64u << 20) && std::chrono::steady_clock::now() < deadline) {
        pollfd p{m_fd, POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0)
            return; // a client that sends nothing more (or slowly) is not waited for
        const auto n = ::recv(m_fd, scratch, sizeof scratch, 0);
        if (n <= 0)
            return;
        dropped += static_cast<std::size_t>(n);
    }
}

Response routing_error(MatchResult result, const std::string& method, const std::string& path) {
    if (result == MatchResult::method_not_allowed)
        return error_response(405, "method_not_allowed",
                              fmt::format("{} is not allowed on {}", method, path));
    return error_response(404, "not_found", fmt::format("no such endpoint: {} {}", method, path));
}

template <class Stream> bool Connection<Stream>::read_head(HeadParser& header) {
    prepare_head_parser(header);
    beast::error_code ec;
    http::read_header(m_stream, m_buffer, header, ec);
    return !ec; // closed by the client, shut down, or garbage
}

template <class Stream> bool Connection<Stream>::serve(HeadParser& header) {
    m_version = header.get().version();
    const bool keep_alive = header.get().keep_alive();
    const std::string target(header.get().target());
    const auto question = target.find('?');
    Request request;
    request.peer = m_peer;
    request.method = std::string(header.get().method_string());
    request.path = target.substr(0, question);
    request.upgrade = std::string(header.get()[http::field::upgrade]);
    request.content_encoding = std::string(header.get()[http::field::content_encoding]);
    if (question != std::string::npos)
        request.query = parse_query(target.substr(question + 1));

    auto match = m_router.match(request.method, request.path);
    const Route* route = match.result == MatchResult::found ? match.route : nullptr;
    if (route)
        request.params = std::move(match.params);
    if (route && route->body == BodyKind::hook)
        for (const auto& field : header.get()) {
            const auto name = field.name_string();
            request.headers[common::ascii_lower(std::string_view(name.data(), name.size()))] =
                std::string(field.value());
        }
    m_unread_body = !header.is_done();
    m_authenticated = false;
    if (m_options.gate) {
        // Before any of the body is read: a refused upload writes nothing.
        const auto authorization = header.get()[http::field::authorization];
        if (auto refused = m_options.gate->admit(
                request, route, std::string_view(authorization.data(), authorization.size())))
            return answer(request, *refused, keep_alive && !m_unread_body);
    }
    m_authenticated = m_peer.unix_socket || !request.peer.token_id.empty();
    if (!route)
        return answer(request, routing_error(match.result, request.method, request.path),
                      keep_alive && !m_unread_body);
    m_body_error.reset();
    if (route->body == BodyKind::stream)
        return serve_stream(header, *route, request, keep_alive);
    if (!read_body(header, *route, request)) {
        remove_file(request.body_file);
        return false;
    }
    if (m_body_error) {
        remove_file(request.body_file);
        return answer(request, *m_body_error, false);
    }
    m_unread_body = false;
    auto response = call(*route, request);
    remove_file(request.body_file);
    return answer(request, response, keep_alive);
}

template <class Stream>
RequestOutcome serve_one(Stream& stream, beast::flat_buffer& buffer, HeadParser& header,
                         const Router& router, const ConnectionOptions& options, const Peer& peer) {
    Connection connection(stream, buffer, router, options, peer);
    RequestOutcome outcome;
    outcome.keep_open = connection.serve(header);
    outcome.authenticated = connection.authenticated();
    outcome.unread_body = !outcome.keep_open && connection.unread_body();
    return outcome;
}

// Requests one after another until the connection closes (the unix socket,
// and the tests' single connections).
template <class Stream> void serve_until_closed(Connection<Stream>& connection) {
    while (true) {
        HeadParser header;
        if (!connection.read_head(header) || !connection.serve(header))
            break;
    }
    connection.drain_input();
}

} // namespace

void prepare_head_parser(HeadParser& parser) {
    // Each route sets its own limit once it is known. (Not boost::none: Boost
    // 1.74 compares a Content-Length against an empty optional as "greater".)
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
}

RequestOutcome serve_request(DeadlineSocket& stream, beast::flat_buffer& buffer, HeadParser& header,
                             const Router& router, const ConnectionOptions& options,
                             const Peer& peer) {
    return serve_one(stream, buffer, header, router, options, peer);
}

RequestOutcome serve_request(TlsStream& stream, beast::flat_buffer& buffer, HeadParser& header,
                             const Router& router, const ConnectionOptions& options,
                             const Peer& peer) {
    return serve_one(stream, buffer, header, router, options, peer);
}

void serve_connection(int fd, const Router& router, const ConnectionOptions& options,
                      const Peer& peer) {
    // A unix socket too: Asio's tcp::socket only reads and writes the descriptor.
    net::io_context context;
    tcp::socket socket(context, protocol_of(fd), fd);
    DeadlineSocket stream(socket, options.idle_timeout);
    beast::flat_buffer buffer;
    Connection connection(stream, buffer, router, options, peer);
    serve_until_closed(connection);
    beast::error_code ec;
    socket.release(ec); // the caller closes fd
}

void serve_tls_connection(int fd, ApiCertificate& certificate, const Router& router,
                          const ConnectionOptions& options, const Peer& peer) {
    // The certificates in use now; a renewal applies to the next connection.
    const auto certificates = certificate.current();
    SSL_CTX* native = certificates->default_context();
    SSL_CTX_up_ref(native); // the Asio context frees its own reference
    ssl::context tls_context(native);
    net::io_context context;
    tcp::socket socket(context, protocol_of(fd), fd);
    TlsStream stream(DeadlineSocket(socket, options.idle_timeout), tls_context);
    // A client that connects and never finishes its handshake (or speaks
    // plain HTTP to this port) is let go at the deadline.
    stream.next_layer().set_deadline(std::chrono::steady_clock::now() + options.handshake_timeout);
    beast::error_code ec;
    stream.handshake(ssl::stream_base::server, ec);
    stream.next_layer().clear_deadline();
    if (!ec) {
        beast::flat_buffer buffer;
        Connection connection(stream, buffer, router, options, peer);
        serve_until_closed(connection);
        // Send our close_notify without waiting for the client's.
        SSL_set_shutdown(stream.native_handle(), SSL_RECEIVED_SHUTDOWN);
        stream.shutdown(ec);
    }
    socket.release(ec); // the caller closes fd
}

} // namespace agent::api
