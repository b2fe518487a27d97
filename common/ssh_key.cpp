#include <common/ssh_key.hpp>

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>

namespace common {

std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string unbase64(std::string_view text) {
    std::string out(3 * (text.size() / 4) + 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(text.data()),
                                  static_cast<int>(text.size()));
    if (n < 0)
        return {};
    out.resize(static_cast<std::size_t>(n));
    // EVP_DecodeBlock counts the padding as zero bytes.
    for (auto it = text.rbegin(); it != text.rend() && *it == '=' && !out.empty(); ++it)
        out.pop_back();
    return out;
}

std::string key_type_of(std::string_view blob) {
    if (blob.size() < 4)
        return {};
    const auto* p = reinterpret_cast<const unsigned char*>(blob.data());
    const std::size_t length = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) |
                               (std::size_t{p[2]} << 8) | std::size_t{p[3]};
    if (length == 0 || length > 64 || blob.size() < 4 + length)
        return {};
    return std::string(blob.substr(4, length));
}

std::string fingerprint_sha256(std::string_view blob) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(blob.data()), blob.size(), digest);
    std::string text = base64({reinterpret_cast<const char*>(digest), sizeof digest});
    while (!text.empty() && text.back() == '=')
        text.pop_back();
    return "SHA256:" + text;
}

Result<PublicKey> parse_public_key(std::string_view line) {
    static constexpr std::array k_types = {"ssh-ed25519",
                                           "ssh-rsa",
                                           "ecdsa-sha2-nistp256",
                                           "ecdsa-sha2-nistp384",
                                           "ecdsa-sha2-nistp521",
                                           "sk-ssh-ed25519@openssh.com",
                                           "sk-ecdsa-sha2-nistp256@openssh.com"};
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' '))
        line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ')
        line.remove_prefix(1);
    if (line.find("PRIVATE KEY-----") != std::string_view::npos)
        return make_error(ErrorKind::usage, "not a public key: this is a private key; give its "
                                            ".pub file (ssh-keygen -y -f KEY prints it)");
    if (line.find('\n') != std::string_view::npos)
        return make_error(ErrorKind::usage, "a public key is one line: give one key at a time");
    PublicKey key;
    const auto first = line.find(' ');
    if (first == std::string_view::npos)
        return make_error(ErrorKind::usage,
                          "not a public key: expected \"TYPE BASE64 [COMMENT]\" as in a .pub file "
                          "(ssh-keygen -t ed25519 writes ~/.ssh/id_ed25519.pub)");
    key.type = std::string(line.substr(0, first));
    auto rest = line.substr(first + 1);
    const auto second = rest.find(' ');
    key.base64 = std::string(rest.substr(0, second));
    if (second != std::string_view::npos)
        key.comment = std::string(rest.substr(second + 1));
    if (std::find(k_types.begin(), k_types.end(), key.type) == k_types.end())
        return make_error(ErrorKind::usage,
                          fmt::format("not a public key: \"{:.40}\" is not a key type OpenSSH "
                                      "knows (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...); "
                                      "give the .pub file, not the private key",
                                      key.type));
    key.blob = unbase64(key.base64);
    if (key.blob.empty() || key_type_of(key.blob) != key.type)
        return make_error(ErrorKind::usage,
                          fmt::format("not a public key: its data is not a {} key", key.type));
    return key;
}

} // namespace common
