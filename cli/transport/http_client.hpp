#pragma once
// The Client over HTTP(S), on libcurl (kept out of this header).

#include <cli/credentials.hpp>
#include <cli/transport/client.hpp>

#include <memory>
#include <string>

namespace cli::transport {

// How an https:// agent's certificate is checked: against the system's CA
// store, against `ca_file` (PEM bundle), or, with `fingerprint`, only against
// that pin (no CA, no host name: a self-signed certificate works). TLS 1.2+.
// A failed check stops before any HTTP byte (and so the token) is sent.
struct TlsOptions {
    std::string ca_file;
    std::string fingerprint; // canonical "sha256:AB:...", common/fingerprint.hpp
    std::string pinned_by;   // where the pin comes from, for messages ("deploy.toml")
    std::string hint;        // how to set ca_file or fingerprint, for messages
};

struct HttpOptions {
    std::string token; // bearer token (cli/credentials.hpp), empty for none
    TokenSource token_source = TokenSource::none; // where `token` came from, for messages
    long connect_timeout_s = 10;
    long request_timeout_s = 300; // non-streaming requests
    // When set, every request goes to this unix socket (the SSH tunnel) and
    // `base_url` only names the agent in messages.
    std::string unix_socket;
    TlsOptions tls;
};

// `base_url` is "http://127.0.0.1:7070" or "https://host:7443" (no trailing slash),
// or with options.unix_socket any name for messages ("ssh://deploy@web1").
std::unique_ptr<Client> make_http_client(std::string base_url, HttpOptions options = {});

// Maps an agent's error answer to a typed error (exposed for tests); a 401 or
// 403 says what to change given where the token came from.
common::Error error_from_response(long status, std::string_view body, std::string_view url,
                                  TokenSource source = TokenSource::none);

} // namespace cli::transport
