#include <cli/credentials.hpp>
#include <cli/transport/http_client.hpp>
#include <common/ascii.hpp>
#include <common/fingerprint.hpp>
#include <common/run_frames.hpp>
#include <common/version.hpp>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <poll.h>

namespace cli::transport {

namespace {

using common::ErrorKind;
using nlohmann::json;

void init_curl_once() {
    struct Global {
        Global() { curl_global_init(CURL_GLOBAL_DEFAULT); }
        ~Global() { curl_global_cleanup(); }
    };
    static Global global;
}

struct Headers {
    curl_slist* list = nullptr;
    ~Headers() { curl_slist_free_all(list); }
    void add(const std::string& h) { list = curl_slist_append(list, h.c_str()); }
};

struct Response {
    long status = 0;
    std::string body;
};

// What the write callback of a stream needs.
struct StreamState {
    CURL* handle = nullptr;
    const LineHandler* handler = nullptr;
    std::string buffer;     // an unfinished line
    std::string error_body; // the body of an error status
    long status = 0;
    bool stopped = false;
    std::optional<common::Error> bad_line;
};

int report_upload(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t sent) {
    (*static_cast<const UploadProgress*>(user))(static_cast<std::uint64_t>(sent));
    return 0; // go on
}

size_t append_body(char* data, size_t size, size_t count, void* user) {
    static_cast<std::string*>(user)->append(data, size * count);
    return size * count;
}

// Hands every complete line to the handler; false when it asked to stop.
bool deliver_lines(StreamState& s) {
    std::size_t start = 0;
    for (auto nl = s.buffer.find('\n'); nl != std::string::npos; nl = s.buffer.find('\n', start)) {
        std::string_view line(s.buffer.data() + start, nl - start);
        start = nl + 1;
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (line.empty())
            continue;
        auto event = json::parse(line, nullptr, false);
        if (event.is_discarded()) {
            s.bad_line =
                common::make_error(ErrorKind::internal,
                                   fmt::format("the agent sent a malformed event: {:.200}", line));
            return false;
        }
        if (!(*s.handler)(event))
            return false;
    }
    s.buffer.erase(0, start);
    return true;
}

size_t on_stream_data(char* data, size_t size, size_t count, void* user) {
    auto& s = *static_cast<StreamState*>(user);
    if (s.status == 0)
        curl_easy_getinfo(s.handle, CURLINFO_RESPONSE_CODE, &s.status);
    if (s.status >= 400) {
        s.error_body.append(data, size * count);
        return size * count;
    }
    s.buffer.append(data, size * count);
    if (!deliver_lines(s)) {
        s.stopped = true;
        return 0; // makes curl stop with CURLE_WRITE_ERROR
    }
    return size * count;
}

common::Error curl_error(CURLcode code, const char* detail, const std::string& url, long os_errno) {
    std::string why = detail && *detail ? detail : curl_easy_strerror(code);
    // "Failed to connect to 127.0.0.1 port 7070 after 0 ms: Couldn't connect to server"
    // says the address twice and hides the reason: the OS says it best.
    if (code == CURLE_COULDNT_CONNECT && os_errno != 0)
        why = std::strerror(static_cast<int>(os_errno));
    if (code == CURLE_OPERATION_TIMEDOUT)
        return common::make_error(
            ErrorKind::timeout,
            fmt::format("the agent at {} did not answer in time: {}", url, why));
    return common::make_error(ErrorKind::connection,
                              fmt::format("cannot reach the agent at {}: {}", url, why));
}

// A pinned certificate: what is expected and what the server showed.
struct PinState {
    std::string expected;
    std::string seen;
};

// Replaces OpenSSL's chain verification: the leaf's fingerprint must be the pin.
int verify_pin(X509_STORE_CTX* store, void* arg) {
    auto& pin = *static_cast<PinState*>(arg);
    X509* leaf = X509_STORE_CTX_get0_cert(store);
    pin.seen = leaf ? common::x509_fingerprint(leaf) : "";
    if (!pin.seen.empty() && pin.seen == pin.expected)
        return 1;
    X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
    return 0; // the handshake fails: no request is sent
}

CURLcode install_pin(CURL*, void* ssl_ctx, void* arg) {
    auto* context = static_cast<SSL_CTX*>(ssl_ctx);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_cert_verify_callback(context, verify_pin, arg);
    return CURLE_OK;
}

ErrorKind kind_of_code(std::string_view code, long status) {
    if (status == 401 || status == 403 || status == 429)
        return ErrorKind::auth;
    if (code == "refused")
        return ErrorKind::refused;
    if (code == "config")
        return ErrorKind::config;
    if (code == "not_found")
        return ErrorKind::not_found;
    if (code == "bad_request" || code == "missing_blobs" || code == "too_large" ||
        code == "bad_path" || code == "size_mismatch")
        return ErrorKind::bad_request;
    if (code == "unauthorized" || code == "forbidden" || code == "auth")
        return ErrorKind::auth;
    if (code == "timeout")
        return ErrorKind::timeout;
    if (code == "disk_full" || status == 507)
        return ErrorKind::disk_full;
    if (code == "busy" || code == "too_slow") // the agent's connection limits: try again
        return ErrorKind::connection;
    if (status == 404)
        return ErrorKind::not_found;
    if (status == 409)
        return ErrorKind::refused;
    if (status >= 400 && status < 500)
        return ErrorKind::bad_request;
    return ErrorKind::internal;
}

common::Error tls_unusable() {
    return common::make_error(ErrorKind::internal,
                              "this deployctl's libcurl cannot check a pinned certificate "
                              "fingerprint (it needs libcurl built with OpenSSL); use ca_file");
}

class HttpClient final : public Client {
  public:
    HttpClient(std::string base_url, HttpOptions options)
        : m_base_url(std::move(base_url)), m_options(std::move(options)) {
        init_curl_once();
        m_handle = curl_easy_init();
    }
    ~HttpClient() override { curl_easy_cleanup(m_handle); }
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    const std::string& url() const override { return m_base_url; }

    common::Result<json> get_json(std::string_view path) override {
        return request_json("GET", path, nullptr, "application/json");
    }
    common::Result<json> post_json(std::string_view path, const json& body) override {
        std::string text = body.dump();
        return request_json("POST", path, &text, "application/json");
    }
    common::Result<json> put_blob(std::string_view path, std::string_view bytes) override {
        std::string text(bytes);
        return request_json("PUT", path, &text, "application/octet-stream");
    }
    common::Result<json> post_bytes(std::string_view path, std::string_view bytes,
                                    std::string_view content_type,
                                    std::string_view content_encoding) override {
        std::string text(bytes);
        const std::string type(content_type), encoding(content_encoding);
        return request_json("POST", path, &text, type.c_str(), encoding.c_str());
    }
    std::uint64_t bytes_sent() const override { return m_sent; }
    common::Result<json> remove(std::string_view path) override {
        return request_json("DELETE", path, nullptr, "application/json");
    }
    common::Status stream_ndjson(std::string_view path, const LineHandler& on_event) override;
    common::Result<std::unique_ptr<Duplex>> open_run(std::string_view path,
                                                     const json& body) override;
    void set_upload_progress(UploadProgress progress) override {
        m_upload_progress = std::move(progress);
    }
    std::unique_ptr<Client> another() const override {
        return std::make_unique<HttpClient>(m_base_url, m_options);
    }

  private:
    long os_errno() {
        long value = 0;
        curl_easy_getinfo(m_handle, CURLINFO_OS_ERRNO, &value);
        return value;
    }
    void setup(const char* method, std::string_view path, Headers& headers, const char* accept);
    // The server check for https:// (TlsOptions); false when libcurl cannot pin.
    bool setup_tls();
    // What a failed transfer says to the user (TLS failures with how to fix them).
    common::Error failure(CURLcode rc);
    common::Result<Response> perform(const char* method, std::string_view path,
                                     const std::string* body, const char* content_type,
                                     const char* content_encoding = "");
    common::Result<json> request_json(const char* method, std::string_view path,
                                      const std::string* body, const char* content_type,
                                      const char* content_encoding = "");

    std::string m_base_url;
    HttpOptions m_options;
    CURL* m_handle = nullptr;
    char m_error[CURL_ERROR_SIZE] = {};
    PinState m_pin;
    bool m_tls_unusable = false; // setup_tls() failed: nothing is sent
    UploadProgress m_upload_progress;
    std::uint64_t m_sent = 0; // request heads and bodies, every request
};

void HttpClient::setup(const char* method, std::string_view path, Headers& headers,
                       const char* accept) {
    curl_easy_reset(m_handle); // keeps the connection cache: blobs reuse one connection
    m_error[0] = '\0';
    // Over a unix socket the host name is a placeholder: the socket is the agent.
    const bool local = !m_options.unix_socket.empty();
    std::string url = (local ? std::string("http://deploy-agent") : m_base_url) + std::string(path);
    curl_easy_setopt(m_handle, CURLOPT_URL, url.c_str());
    if (local)
        curl_easy_setopt(m_handle, CURLOPT_UNIX_SOCKET_PATH, m_options.unix_socket.c_str());
    curl_easy_setopt(m_handle, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(m_handle, CURLOPT_ERRORBUFFER, m_error);
    curl_easy_setopt(m_handle, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(m_handle, CURLOPT_CONNECTTIMEOUT, m_options.connect_timeout_s);
    curl_easy_setopt(m_handle, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(m_handle, CURLOPT_PROTOCOLS_STR, "http,https");
    std::string agent = fmt::format("deployctl/{}", common::version());
    curl_easy_setopt(m_handle, CURLOPT_USERAGENT, agent.c_str());
    m_tls_unusable = !local && m_base_url.starts_with("https://") && !setup_tls();
    headers.add(fmt::format("Accept: {}", accept));
    headers.add("Expect:");
    if (!m_options.token.empty())
        headers.add("Authorization: Bearer " + m_options.token);
}

bool HttpClient::setup_tls() {
    const auto& tls = m_options.tls;
    curl_easy_setopt(m_handle, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    m_pin = PinState{tls.fingerprint, ""};
    if (tls.fingerprint.empty()) {
        curl_easy_setopt(m_handle, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(m_handle, CURLOPT_SSL_VERIFYHOST, 2L);
        if (!tls.ca_file.empty())
            curl_easy_setopt(m_handle, CURLOPT_CAINFO, tls.ca_file.c_str());
        return true;
    }
    // The pin replaces libcurl's CA and host name checks; verify_pin runs
    // inside the handshake. No resumed sessions: each connection shows its
    // certificate.
    curl_easy_setopt(m_handle, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(m_handle, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(m_handle, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    return curl_easy_setopt(m_handle, CURLOPT_SSL_CTX_FUNCTION, install_pin) == CURLE_OK &&
           curl_easy_setopt(m_handle, CURLOPT_SSL_CTX_DATA, &m_pin) == CURLE_OK;
}

common::Error HttpClient::failure(CURLcode rc) {
    const auto& tls = m_options.tls;
    if (!m_pin.expected.empty() && !m_pin.seen.empty() && m_pin.seen != m_pin.expected)
        return common::make_error(
            ErrorKind::auth,
            fmt::format("the certificate of {} has fingerprint {}, but {} pins {}: this may not "
                        "be your agent; nothing was sent. If its certificate was replaced on "
                        "purpose, update the pin (deploy-agent logs its fingerprint at start; "
                        "`deployctl agent info` shows it)",
                        m_base_url, m_pin.seen, tls.pinned_by, m_pin.expected));
    const std::string detail = m_error[0] ? m_error : curl_easy_strerror(rc);
    if (rc == CURLE_PEER_FAILED_VERIFICATION)
        return common::make_error(
            ErrorKind::auth,
            fmt::format("the certificate of {} is not trusted ({}): it is self-signed, from a "
                        "CA this machine does not trust, or not issued for this host name; "
                        "nothing was sent; {}",
                        m_base_url, detail, tls.hint));
    if (rc == CURLE_SSL_CACERT_BADFILE)
        return common::make_error(
            ErrorKind::config, fmt::format("cannot use the CA file {}: {}", tls.ca_file, detail));
    if (rc == CURLE_SSL_CONNECT_ERROR)
        return common::make_error(ErrorKind::connection,
                                  fmt::format("the TLS handshake with {} failed: {} (does the "
                                              "agent serve HTTPS on this port?)",
                                              m_base_url, detail));
    auto error = curl_error(rc, m_error, m_base_url, os_errno());
    if (error.kind == ErrorKind::connection && m_options.unix_socket.empty())
        error.message += "; is deploy-agent running there, listening on that address? Check the "
                         "URL: --host, DEPLOYCTL_HOST or the target's hosts in deploy.toml";
    return error;
}

common::Result<Response> HttpClient::perform(const char* method, std::string_view path,
                                             const std::string* body, const char* content_type,
                                             const char* content_encoding) {
    Headers headers;
    setup(method, path, headers, "application/json");
    Response response;
    if (body) {
        headers.add(fmt::format("Content-Type: {}", content_type));
        if (*content_encoding)
            headers.add(fmt::format("Content-Encoding: {}", content_encoding));
        curl_easy_setopt(m_handle, CURLOPT_POSTFIELDS, body->data());
        curl_easy_setopt(m_handle, CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(body->size()));
    }
    curl_easy_setopt(m_handle, CURLOPT_HTTPHEADER, headers.list);
    curl_easy_setopt(m_handle, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(m_handle, CURLOPT_WRITEDATA, &response.body);
    // Give up on a stalled transfer, not on a long one (big blobs).
    curl_easy_setopt(m_handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(m_handle, CURLOPT_LOW_SPEED_TIME, m_options.request_timeout_s);
    if (body && m_upload_progress &&
        (std::string_view(method) == "PUT" || std::string_view(content_type) == k_blobs_type)) {
        curl_easy_setopt(m_handle, CURLOPT_XFERINFOFUNCTION, report_upload);
        curl_easy_setopt(m_handle, CURLOPT_XFERINFODATA, &m_upload_progress);
        curl_easy_setopt(m_handle, CURLOPT_NOPROGRESS, 0L);
    }
    if (m_tls_unusable)
        return tls_unusable();
    CURLcode rc = curl_easy_perform(m_handle);
    long head = 0;
    curl_off_t uploaded = 0;
    curl_easy_getinfo(m_handle, CURLINFO_REQUEST_SIZE, &head);
    curl_easy_getinfo(m_handle, CURLINFO_SIZE_UPLOAD_T, &uploaded);
    m_sent += static_cast<std::uint64_t>(head) + static_cast<std::uint64_t>(uploaded);
    if (rc != CURLE_OK)
        return failure(rc);
    curl_easy_getinfo(m_handle, CURLINFO_RESPONSE_CODE, &response.status);
    return response;
}

common::Result<json> HttpClient::request_json(const char* method, std::string_view path,
                                              const std::string* body, const char* content_type,
                                              const char* content_encoding) {
    auto response = perform(method, path, body, content_type, content_encoding);
    if (!response)
        return response.error();
    if (response->status >= 400)
        return error_from_response(response->status, response->body, m_base_url,
                                   m_options.token_source);
    if (response->body.empty())
        return json::object();
    auto parsed = json::parse(response->body, nullptr, false);
    if (parsed.is_discarded())
        return common::make_error(
            ErrorKind::internal,
            fmt::format("the agent at {} sent an answer that is not JSON: {:.200}", m_base_url,
                        response->body));
    return parsed;
}

common::Status HttpClient::stream_ndjson(std::string_view path, const LineHandler& on_event) {
    Headers headers;
    setup("GET", path, headers, "application/x-ndjson");
    StreamState state;
    state.handle = m_handle;
    state.handler = &on_event;
    curl_easy_setopt(m_handle, CURLOPT_HTTPHEADER, headers.list);
    curl_easy_setopt(m_handle, CURLOPT_WRITEFUNCTION, on_stream_data);
    curl_easy_setopt(m_handle, CURLOPT_WRITEDATA, &state);
    if (m_tls_unusable)
        return tls_unusable();
    CURLcode rc = curl_easy_perform(m_handle);
    if (state.bad_line)
        return *state.bad_line;
    if (state.stopped)
        return {};
    if (rc != CURLE_OK)
        return failure(rc);
    if (state.status == 0)
        curl_easy_getinfo(m_handle, CURLINFO_RESPONSE_CODE, &state.status);
    if (state.status >= 400)
        return error_from_response(state.status, state.error_body, m_base_url,
                                   m_options.token_source);
    state.buffer += '\n'; // a last line without a newline still counts
    deliver_lines(state);
    if (state.bad_line)
        return *state.bad_line;
    return {};
}

// The run connection: a libcurl handle that only connected (CURLOPT_CONNECT_ONLY), TLS and
// all, and the bytes read past the answer's head.
class CurlDuplex final : public Duplex {
  public:
    explicit CurlDuplex(CURL* handle) : m_handle(handle) {
        curl_socket_t socket = CURL_SOCKET_BAD;
        curl_easy_getinfo(m_handle, CURLINFO_ACTIVESOCKET, &socket);
        m_fd = static_cast<int>(socket);
    }
    ~CurlDuplex() override { curl_easy_cleanup(m_handle); }
    CurlDuplex(const CurlDuplex&) = delete;
    CurlDuplex& operator=(const CurlDuplex&) = delete;

    common::Result<std::size_t> send(std::string_view bytes) override {
        std::size_t sent = 0;
        CURLcode rc = curl_easy_send(m_handle, bytes.data(), bytes.size(), &sent);
        if (rc == CURLE_AGAIN)
            return std::size_t{0};
        if (rc != CURLE_OK)
            return common::make_error(
                ErrorKind::connection,
                fmt::format("the connection to the agent failed: {}", curl_easy_strerror(rc)));
        return sent;
    }
    common::Result<Received> receive(char* buffer, std::size_t capacity) override {
        if (m_offset < m_pending.size()) {
            const std::size_t n = std::min(capacity, m_pending.size() - m_offset);
            std::memcpy(buffer, m_pending.data() + m_offset, n);
            m_offset += n;
            return Received{n, false};
        }
        std::size_t n = 0;
        CURLcode rc = curl_easy_recv(m_handle, buffer, capacity, &n);
        if (rc == CURLE_AGAIN)
            return Received{0, false};
        if (rc != CURLE_OK)
            return common::make_error(
                ErrorKind::connection,
                fmt::format("the connection to the agent failed: {}", curl_easy_strerror(rc)));
        return Received{n, n == 0};
    }
    int fd() const override { return m_fd; }
    // Bytes read past the answer's head: receive() hands them out first.
    void keep(std::string bytes) {
        m_pending = std::move(bytes);
        m_offset = 0;
    }
    // TLS: receive() is called until it has nothing, so OpenSSL holds no decrypted bytes
    // when the caller polls; only the head's leftovers wait here.
    bool has_buffered() const override { return m_offset < m_pending.size(); }

  private:
    CURL* m_handle;
    std::string m_pending;
    std::size_t m_offset = 0;
    int m_fd = -1;
};

// Waits until `fd` is ready for `events` or `deadline` passes; false on timeout.
bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0)
            return false;
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, static_cast<int>(left));
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return true; // let the next send/recv report it
    }
}

// "host:port" of "https://host:port" (the Host header).
std::string host_of(std::string_view base_url) {
    if (auto scheme = base_url.find("://"); scheme != std::string_view::npos)
        base_url.remove_prefix(scheme + 3);
    return std::string(base_url.substr(0, base_url.find('/')));
}

common::Result<std::unique_ptr<Duplex>> HttpClient::open_run(std::string_view path,
                                                             const json& body) {
    using Clock = std::chrono::steady_clock;
    Headers headers;
    setup("POST", path, headers, "application/json");
    curl_easy_setopt(m_handle, CURLOPT_CONNECT_ONLY, 1L); // we speak HTTP ourselves
    if (m_tls_unusable)
        return tls_unusable();
    CURLcode rc = curl_easy_perform(m_handle);
    if (rc != CURLE_OK)
        return failure(rc);
    // From here the handle is the run's: this client gets a new one.
    CURL* handle = m_handle;
    m_handle = curl_easy_init();
    curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, nullptr);
    auto connection = std::make_unique<CurlDuplex>(handle);
    const auto lost = [&](std::string_view why) {
        return common::make_error(
            ErrorKind::connection,
            fmt::format("the connection to the agent at {} failed: {}", m_base_url, why));
    };

    const std::string text = body.dump();
    std::string request = fmt::format(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: deployctl/{}\r\nAccept: application/json\r\n"
        "Connection: Upgrade\r\nUpgrade: {}\r\nContent-Type: application/json\r\n"
        "Content-Length: {}\r\n",
        path, m_options.unix_socket.empty() ? host_of(m_base_url) : "deploy-agent",
        common::version(), common::run::k_upgrade, text.size());
    if (!m_options.token.empty())
        request += "Authorization: Bearer " + m_options.token + "\r\n";
    request += "\r\n" + text;

    const auto deadline = Clock::now() + std::chrono::seconds(m_options.request_timeout_s);
    const auto timed_out = [&] {
        return common::make_error(
            ErrorKind::timeout, fmt::format("the agent at {} did not answer in time", m_base_url));
    };
    for (std::string_view rest = request; !rest.empty();) {
        auto sent = connection->send(rest);
        if (!sent)
            return lost(sent.error().message);
        rest.remove_prefix(*sent);
        if (*sent == 0 && !wait_for(connection->fd(), POLLOUT, deadline))
            return timed_out();
    }
    // The answer's head, and whatever follows it.
    std::string answer;
    std::size_t head_end = std::string::npos;
    char buffer[16384];
    while ((head_end = answer.find("\r\n\r\n")) == std::string::npos) {
        if (answer.size() > 65536)
            return lost("the answer's head is too long");
        auto got = connection->receive(buffer, sizeof buffer);
        if (!got)
            return lost(got.error().message);
        if (got->eof)
            return lost("it closed the connection without answering");
        answer.append(buffer, got->size);
        if (got->size == 0 && !wait_for(connection->fd(), POLLIN, deadline))
            return timed_out();
    }
    const std::string head = answer.substr(0, head_end);
    std::string rest = answer.substr(head_end + 4);
    // "HTTP/1.1 101 Switching Protocols"
    long status = 0;
    if (head.size() < 12 || !head.starts_with("HTTP/1.") ||
        std::sscanf(head.c_str() + 9, "%3ld", &status) != 1)
        return common::make_error(
            ErrorKind::internal,
            fmt::format("the agent at {} sent an answer that is not HTTP: {:.100}", m_base_url,
                        head));
    std::optional<std::size_t> length;
    for (std::size_t at = head.find("\r\n"); at != std::string::npos;) {
        const std::size_t next = head.find("\r\n", at + 2);
        const std::string line = common::ascii_lower(
            head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2));
        if (line.starts_with("content-length:"))
            length = std::strtoull(line.c_str() + 15, nullptr, 10);
        at = next;
    }
    if (status == 101) {
        connection->keep(std::move(rest)); // the first frames' bytes
        return std::unique_ptr<Duplex>(std::move(connection));
    }
    // An error answer: read its body (Content-Length, else until the agent closes).
    while (!length || rest.size() < *length) {
        if (rest.size() > (1u << 20))
            break;
        auto got = connection->receive(buffer, sizeof buffer);
        if (!got || got->eof)
            break;
        rest.append(buffer, got->size);
        if (got->size == 0 && !wait_for(connection->fd(), POLLIN, deadline))
            break;
    }
    if (status >= 400)
        return error_from_response(status, rest, m_base_url, m_options.token_source);
    return common::make_error(
        ErrorKind::internal,
        fmt::format("the agent at {} answered HTTP {} instead of starting the command (an "
                    "agent older than `deployctl run`?)",
                    m_base_url, status));
}

} // namespace

common::Result<json> Client::post_bytes(std::string_view, std::string_view, std::string_view,
                                        std::string_view) {
    return common::make_error(ErrorKind::internal, "this client cannot post bytes");
}

common::Result<std::unique_ptr<Duplex>> Client::open_run(std::string_view, const nlohmann::json&) {
    return common::make_error(ErrorKind::internal, "this connection cannot run commands");
}

common::Error error_from_response(long status, std::string_view body, std::string_view url,
                                  TokenSource source) {
    std::string code;
    std::string message;
    auto parsed = json::parse(body, nullptr, false);
    if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error") &&
        parsed["error"].is_object()) {
        code = parsed["error"].value("code", "");
        message = parsed["error"].value("message", "");
    }
    ErrorKind kind = kind_of_code(code, status);
    if (status == 429) // the address is refused after failed logins, whatever the token
        return common::make_error(ErrorKind::auth,
                                  fmt::format("the agent at {} answered HTTP 429: {}", url,
                                              message.empty() ? "too many requests" : message));
    if (kind == ErrorKind::auth)
        message = auth_error_message(status, message.empty() ? "refused" : message, url, source);
    else if (message.empty())
        message = fmt::format("the agent at {} answered HTTP {}", url, status);
    return common::make_error(kind, std::move(message));
}

std::unique_ptr<Client> make_http_client(std::string base_url, HttpOptions options) {
    return std::make_unique<HttpClient>(std::move(base_url), std::move(options));
}

} // namespace cli::transport
