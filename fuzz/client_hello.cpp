// deploy-proxy's on-demand TLS reading a connection's first bytes:
// agent::proxy::parse_client_hello (client_hello.cpp) on whatever a client
// sends before its handshake. Input: the bytes as they arrive.
// Properties:
// - a name is a valid lower-case host name (valid_sni_host); no name otherwise;
// - incomplete only while the first record is not all there (fewer bytes than
//   its header says), and never with acme-tls/1 said;
// - once not incomplete, more bytes after them change nothing (only the first
//   record counts), and a prefix cut inside the first record is incomplete;
// - the same answer as OpenSSL: when OpenSSL's server gets as far as its
//   ClientHello callback on these bytes and the hello lies whole in the first
//   record, the server_name and ALPN extensions OpenSSL hands over give the
//   same name and the same acme-tls/1 verdict (server_name_of, alpn_offers).

#include <agent/proxy/client_hello.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "check.hpp"

namespace {

using agent::proxy::ClientHello;
using Status = ClientHello::Status;

bool same(const ClientHello& a, const ClientHello& b) {
    return a.status == b.status && a.name == b.name && a.acme_tls == b.acme_tls;
}

// The first record's size (header included) when its header is one the
// parser waits for, else none.
std::optional<std::size_t> record_size(std::string_view bytes) {
    if (bytes.size() < 5 || static_cast<unsigned char>(bytes[0]) != 22 ||
        static_cast<unsigned char>(bytes[1]) != 3)
        return std::nullopt;
    const std::size_t length =
        (static_cast<unsigned char>(bytes[3]) << 8) | static_cast<unsigned char>(bytes[4]);
    if (length == 0 || length > agent::proxy::k_max_client_hello_record - 5)
        return std::nullopt;
    return 5 + length;
}

struct Seen {
    bool called = false;
    std::optional<std::string> server_name; // the extension's body, when sent
    std::optional<std::string> alpn;
};

int on_hello(SSL* ssl, int* alert, void* arg) {
    auto* seen = static_cast<Seen*>(arg);
    seen->called = true;
    const unsigned char* data = nullptr;
    std::size_t size = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &data, &size) == 1)
        seen->server_name.emplace(reinterpret_cast<const char*>(data), size);
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &data,
                                  &size) == 1)
        seen->alpn.emplace(reinterpret_cast<const char*>(data), size);
    *alert = SSL_AD_HANDSHAKE_FAILURE;
    return SSL_CLIENT_HELLO_ERROR; // seen enough: no certificate is needed
}

// What OpenSSL's server sees of `bytes` as a first flight. One SSL object
// serves every input (SSL_clear between them): a new one per input costs
// more than all the rest.
Seen openssl_view(std::string_view bytes) {
    static Seen* current = nullptr;
    static SSL* ssl = [] {
        SSL_CTX* context = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
        SSL_CTX_set_client_hello_cb(
            context, [](SSL* s, int* alert, void*) { return on_hello(s, alert, current); },
            nullptr);
        return SSL_new(context);
    }();
    Seen seen;
    current = &seen;
    SSL_clear(ssl);
    BIO* in = BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()));
    BIO* out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, in, out); // the previous input's are freed
    SSL_set_accept_state(ssl);
    (void)SSL_do_handshake(ssl);
    ERR_clear_error();
    current = nullptr;
    return seen;
}

} // namespace

// OpenSSL allocates some 40 KiB per handshake; ASan's default quarantine
// (256 MiB) would make each of them fresh memory to fault in.
extern "C" const char* __asan_default_options() {
    return "quarantine_size_mb=16";
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto hello = agent::proxy::parse_client_hello(input);

    if (hello.status == Status::named) {
        FUZZ_CHECK(agent::proxy::valid_sni_host(hello.name));
    } else {
        FUZZ_CHECK(hello.name.empty());
    }
    const auto record = record_size(input);
    if (hello.status == Status::incomplete) {
        FUZZ_CHECK(!hello.acme_tls);
        FUZZ_CHECK(size < 5 || (record && size < *record));
        return 0;
    }
    FUZZ_CHECK(size >= 5);
    FUZZ_CHECK(!record || size >= *record);
    const std::string longer = std::string(input) + "\x16\x03\x01\x00\x05"
                                                    "extra";
    FUZZ_CHECK(same(agent::proxy::parse_client_hello(longer), hello));
    if (record) {
        FUZZ_CHECK(agent::proxy::parse_client_hello(input.substr(0, *record - 1)).status ==
                   Status::incomplete);
        FUZZ_CHECK(same(agent::proxy::parse_client_hello(input.substr(0, *record)), hello));
    }

    // Against OpenSSL, when the whole hello is in the first record.
    const Seen seen = openssl_view(input);
    if (!seen.called || !record)
        return 0;
    const std::size_t hello_length = (static_cast<unsigned char>(input[6]) << 16) |
                                     (static_cast<unsigned char>(input[7]) << 8) |
                                     static_cast<unsigned char>(input[8]);
    if (static_cast<unsigned char>(input[5]) != 1 || 4 + hello_length > *record - 5)
        return 0;
    const std::string name =
        seen.server_name ? agent::proxy::server_name_of(*seen.server_name) : "";
    FUZZ_CHECK(hello.name == name);
    FUZZ_CHECK(hello.status == (name.empty() ? Status::no_name : Status::named));
    FUZZ_CHECK(hello.acme_tls == (seen.alpn && agent::proxy::alpn_offers(
                                                   *seen.alpn, agent::proxy::k_acme_tls_protocol)));
    return 0;
}
