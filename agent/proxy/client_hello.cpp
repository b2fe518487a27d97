#include <agent/proxy/client_hello.hpp>

#include <cstdint>

namespace agent::proxy {

namespace {

// Reads big-endian fields off a byte range; any read past its end fails and
// leaves the reader failed (every later read fails too).
class Reader {
  public:
    explicit Reader(std::string_view bytes) : m_bytes(bytes) {}

    bool ok() const { return m_ok; }
    bool empty() const { return m_bytes.empty(); }
    std::size_t size() const { return m_bytes.size(); }

    std::uint32_t number(std::size_t width) {
        if (!m_ok || m_bytes.size() < width) {
            m_ok = false;
            return 0;
        }
        std::uint32_t value = 0;
        for (std::size_t i = 0; i < width; ++i)
            value = (value << 8) | static_cast<unsigned char>(m_bytes[i]);
        m_bytes.remove_prefix(width);
        return value;
    }
    std::string_view take(std::size_t length) {
        if (!m_ok || m_bytes.size() < length) {
            m_ok = false;
            return {};
        }
        auto out = m_bytes.substr(0, length);
        m_bytes.remove_prefix(length);
        return out;
    }
    // A field prefixed with its length on `width` bytes.
    std::string_view vector(std::size_t width) { return take(number(width)); }

  private:
    std::string_view m_bytes;
    bool m_ok = true;
};

constexpr unsigned k_record_handshake = 22;
constexpr unsigned k_handshake_client_hello = 1;
constexpr unsigned k_extension_server_name = 0;
constexpr unsigned k_extension_alpn = 16;
constexpr unsigned k_name_type_host = 0;
constexpr std::size_t k_max_record_body = k_max_client_hello_record - 5;

// The ClientHello body (after its handshake header): the extensions' bodies we use.
void read_hello_body(std::string_view body, ClientHello& out) {
    Reader hello(body);
    hello.number(2); // legacy_version
    hello.take(32);  // random
    hello.vector(1); // legacy_session_id
    hello.vector(2); // cipher_suites
    hello.vector(1); // legacy_compression_methods
    if (!hello.ok() || hello.empty())
        return; // malformed, or a hello without extensions (no SNI)
    Reader extensions(hello.vector(2));
    if (!hello.ok())
        return;
    bool seen_name = false, seen_alpn = false;
    while (!extensions.empty()) {
        const auto type = extensions.number(2);
        const auto data = extensions.vector(2);
        if (!extensions.ok()) { // a truncated list: trust none of it
            out.name.clear();
            out.acme_tls = false;
            return;
        }
        if (type == k_extension_server_name && !seen_name) {
            seen_name = true;
            out.name = server_name_of(data);
        } else if (type == k_extension_alpn && !seen_alpn) {
            seen_alpn = true;
            out.acme_tls = alpn_offers(data, k_acme_tls_protocol);
        }
    }
}

char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

} // namespace

ClientHello parse_client_hello(std::string_view bytes) {
    ClientHello out;
    Reader record(bytes);
    const auto content_type = record.number(1);
    const auto major = record.number(1);
    record.number(1); // minor: 0 (SSL 3.0 framing) to 4, clients vary
    const auto length = record.number(2);
    if (!record.ok())
        return out; // fewer than the 5 bytes of a record header
    out.status = ClientHello::Status::no_name;
    if (content_type != k_record_handshake || major != 3 || length == 0 ||
        length > k_max_record_body)
        return out; // not TLS (plain HTTP on the HTTPS port, SSLv2, ...)
    if (record.size() < length) {
        out.status = ClientHello::Status::incomplete;
        return out;
    }
    Reader handshake(record.take(length));
    const auto type = handshake.number(1);
    const auto body_length = handshake.number(3);
    if (!handshake.ok() || type != k_handshake_client_hello || body_length > handshake.size())
        return out; // not a hello, or one longer than its record: no name from it
    read_hello_body(handshake.take(body_length), out);
    out.status = out.name.empty() ? ClientHello::Status::no_name : ClientHello::Status::named;
    return out;
}

std::string server_name_of(std::string_view extension) {
    Reader body(extension);
    Reader list(body.vector(2));
    if (!body.ok() || !body.empty())
        return {};
    while (!list.empty()) {
        const auto name_type = list.number(1);
        const auto name = list.vector(2);
        if (!list.ok())
            return {};
        if (name_type != k_name_type_host)
            continue;
        std::string out(name);
        for (char& c : out)
            c = lower(c);
        return valid_sni_host(out) ? out : std::string();
    }
    return {};
}

bool alpn_offers(std::string_view extension, std::string_view protocol) {
    Reader body(extension);
    Reader list(body.vector(2));
    if (!body.ok() || !body.empty())
        return false;
    while (!list.empty()) {
        const auto offered = list.vector(1);
        if (!list.ok())
            return false;
        if (offered == protocol)
            return true;
    }
    return false;
}

bool valid_sni_host(std::string_view name) {
    if (name.empty() || name.size() > 253)
        return false;
    std::size_t labels = 0;
    bool numeric = false; // the last label so far: all digits
    while (true) {
        const auto dot = name.find('.');
        const auto label = name.substr(0, dot);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        numeric = true;
        for (char c : label) {
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                return false;
            numeric = numeric && c >= '0' && c <= '9';
        }
        ++labels;
        if (dot == std::string_view::npos)
            break;
        name.remove_prefix(dot + 1);
    }
    if (labels < 2 || numeric) // no top-level domain is all digits: an IP address is no name
        return false;
    // `name` is the last label now. Special-use names no CA issues for (nor does the agent
    // ask): a handshake for "app.localhost" is not held for a certificate that never comes.
    return name != "localhost" && name != "local" && name != "internal" && name != "invalid";
}

} // namespace agent::proxy
