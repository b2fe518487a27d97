#pragma once
// What deploy-proxy reads of a TLS ClientHello before OpenSSL sees it: the
// host name the client asks for (SNI, RFC 6066) and whether it offers the
// ACME TLS-ALPN-01 protocol (RFC 8737). Used by on-demand TLS, which peeks at
// the first record of a connection to decide whether to hold the handshake
// while the agent gets a certificate, and by the certificates' ClientHello
// callback (tls_certificates.cpp) on the extensions OpenSSL hands it. The
// bytes come from anyone: every length is checked, nothing is trusted.

#include <cstddef>
#include <string>
#include <string_view>

namespace agent::proxy {

// The largest first record looked at: a TLS record header and 2^14 bytes.
constexpr std::size_t k_max_client_hello_record = 5 + 16384;

// The ALPN protocol of a TLS-ALPN-01 challenge.
constexpr std::string_view k_acme_tls_protocol = "acme-tls/1";

struct ClientHello {
    enum class Status {
        incomplete, // the first record is not all there yet: read more
        no_name,    // complete, but no usable host name: not a ClientHello, malformed,
                    // fragmented over several records, no SNI, or a name that is not a host
        named,      // `name` is the host name the client asks for
    };
    Status status = Status::incomplete;
    std::string name;      // lower-case, with Status::named
    bool acme_tls = false; // the client offers ALPN acme-tls/1 (whatever the status but incomplete)
};

// Parses the first TLS record of a connection from `bytes` (what has arrived
// so far; bytes after the first record are ignored).
ClientHello parse_client_hello(std::string_view bytes);

// The host name of a server_name extension's body (its extension_data),
// lower-case; empty when there is none or it is not a valid host name.
std::string server_name_of(std::string_view extension);

// Whether an application_layer_protocol_negotiation extension's body offers `protocol`.
bool alpn_offers(std::string_view extension, std::string_view protocol);

// Whether `name` is a host name a certificate may be asked for: labels of
// lower-case letters, digits and '-', not starting or ending with '-', 1 to
// 63 bytes each, at least two of them, the last not all digits (an IPv4
// address is not a host name) nor a special-use one the agent never asks a
// certificate for (localhost, local, internal, invalid), 253 bytes at most in all.
bool valid_sni_host(std::string_view name);

} // namespace agent::proxy
