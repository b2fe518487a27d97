#pragma once
// The files of --acme-dir: what the agent's ACME client (issue 22) leaves for
// deploy-proxy, which serves them. The agent writes each file atomically
// (a temporary file renamed into place, a key before its certificate), then
// sends SIGHUP; the proxy also looks every 250 ms.
//
//   DIR/certs/NAME.crt, NAME.key        a certificate the agent obtained (PEM chain,
//                                       PEM key); NAME is its domain, "_.example.com"
//                                       for "*.example.com"
//   DIR/tls-alpn-01/NAME.crt, NAME.key  a TLS-ALPN-01 challenge certificate (RFC 8737),
//                                       shown to a client that asks for NAME with ALPN
//                                       acme-tls/1
//   DIR/http-01/TOKEN                   the answer to GET /.well-known/acme-challenge/TOKEN
//
// Pure file logic, no OpenSSL and no Asio: tls_certificates.cpp loads the
// pairs, the sessions serve the http-01 answers.

#include <agent/proxy/tls_certificates.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agent::proxy::acme {

inline constexpr std::string_view k_certs_dir = "certs";
inline constexpr std::string_view k_tls_alpn_dir = "tls-alpn-01";
inline constexpr std::string_view k_http_dir = "http-01";
inline constexpr std::string_view k_challenge_prefix = "/.well-known/acme-challenge/";
// An http-01 answer is a key authorization (token "." thumbprint): some 130 bytes.
inline constexpr std::size_t k_max_http_answer = 4096;

// A pair of `dir`: NAME.crt with NAME.key, and the NAME they stand for.
struct Pair {
    std::string name; // the file name without .crt ("_.example.com")
    CertificateFiles files;
};

// The pairs of `dir` sorted by name: every NAME.crt whose NAME is a valid
// host name (or "_." and one), with its NAME.key. A certificate without its
// key, or with a name that is not a host, is left out and described in
// `problems` (when given); a key without a certificate is not (the agent
// writes the key first). A missing directory has no pairs.
std::vector<Pair> pairs(const std::filesystem::path& dir, std::vector<std::string>* problems);

// What identifies a version of the certificate files under `acme_dir`: each
// .crt of certs/ and tls-alpn-01/ with its inode, mtime and size. A certificate
// added, removed, renamed over or rewritten changes it; its key alone does not:
// the agent writes the key first, and the pair is read once the certificate
// that matches it is there.
std::string stamps(const std::filesystem::path& acme_dir);

// The TOKEN of a request target "/.well-known/acme-challenge/TOKEN" when TOKEN
// is [A-Za-z0-9_-]{1,128}; empty for any other target (a query, an escape,
// a dot or a slash after the prefix are not tokens).
std::string_view http_token(std::string_view target);

// The answer to the http-01 challenge `token` (http_token()) from the file
// http_dir/TOKEN, read now: none when there is no such regular file (a link is
// not followed) or it is larger than k_max_http_answer.
std::optional<std::string> read_http_answer(const std::filesystem::path& http_dir,
                                            std::string_view token);

} // namespace agent::proxy::acme
