#include <common/ascii.hpp>
#include <common/fingerprint.hpp>
#include <common/hash.hpp>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include <cctype>

namespace common {

namespace {

constexpr std::string_view k_prefix = "sha256:";

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size())
        return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (ascii_lower(text[i]) != prefix[i])
            return false;
    return true;
}

// "ab12..." (64 hex digits) -> "sha256:AB:12:...".
std::string canonical(std::string_view hex) {
    std::string out(k_prefix);
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        if (i > 0)
            out += ':';
        out += static_cast<char>(std::toupper(static_cast<unsigned char>(hex[i])));
        out += static_cast<char>(std::toupper(static_cast<unsigned char>(hex[i + 1])));
    }
    return out;
}

} // namespace

Result<std::string> parse_fingerprint(std::string_view text) {
    std::string_view rest = text;
    while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front())))
        rest.remove_prefix(1);
    while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.back())))
        rest.remove_suffix(1);
    for (std::string_view prefix : {"sha256 fingerprint=", "sha256:", "sha256="})
        if (starts_with_nocase(rest, prefix)) {
            rest.remove_prefix(prefix.size());
            break;
        }
    std::string hex;
    bool colons = rest.find(':') != std::string_view::npos;
    for (std::size_t i = 0; i < rest.size(); ++i) {
        const char c = rest[i];
        if (std::isxdigit(static_cast<unsigned char>(c))) {
            hex += c;
            continue;
        }
        // With colons, exactly one after every pair of digits.
        if (c == ':' && colons && hex.size() % 2 == 0 && !hex.empty() && i + 1 < rest.size() &&
            rest[i - 1] != ':')
            continue;
        hex.clear();
        break;
    }
    if (hex.size() != 64 || (colons && rest.size() != 64 + 31))
        return make_error(ErrorKind::usage,
                          fmt::format("'{}' is not a SHA-256 fingerprint: expected 32 hex pairs "
                                      "as `openssl x509 -noout -fingerprint -sha256 -in CERT` "
                                      "prints them, e.g. \"sha256:AB:CD:...\" (colons and the "
                                      "prefix are optional)",
                                      text));
    return canonical(hex);
}

std::string der_fingerprint(std::string_view der) {
    return canonical(sha256_hex(der));
}

std::string x509_fingerprint(X509* cert) {
    unsigned char* der = nullptr;
    const int length = i2d_X509(cert, &der);
    if (length <= 0)
        return {};
    std::string out =
        der_fingerprint({reinterpret_cast<const char*>(der), static_cast<std::size_t>(length)});
    OPENSSL_free(der);
    return out;
}

std::string openssl_fingerprint_form(std::string_view canonical_form) {
    std::string_view pairs = canonical_form;
    if (pairs.starts_with(k_prefix))
        pairs.remove_prefix(k_prefix.size());
    return fmt::format("sha256 Fingerprint={}", pairs);
}

} // namespace common
