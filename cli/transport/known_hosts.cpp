#include <cli/transport/known_hosts.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>
#include <libssh2.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace cli::transport {

namespace {

using common::ErrorKind;
namespace fs = std::filesystem;

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

int knownhost_key_mask(std::string_view type) {
    if (type == "ssh-ed25519")
        return LIBSSH2_KNOWNHOST_KEY_ED25519;
    if (type == "ssh-rsa")
        return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    if (type == "ssh-dss")
        return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    if (type == "ecdsa-sha2-nistp256")
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    if (type == "ecdsa-sha2-nistp384")
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    if (type == "ecdsa-sha2-nistp521")
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    return 0;
}

// libssh2's known-hosts list needs a session, though it never connects.
struct KnownHosts {
    LIBSSH2_SESSION* session = libssh2_session_init();
    LIBSSH2_KNOWNHOSTS* hosts = session ? libssh2_knownhost_init(session) : nullptr;
    ~KnownHosts() {
        if (hosts)
            libssh2_knownhost_free(hosts);
        if (session)
            libssh2_session_free(session);
    }
};

common::Status read_lines(const fs::path& file, LIBSSH2_KNOWNHOSTS* hosts) {
    std::ifstream in(file);
    if (!in) {
        if (errno == ENOENT)
            return {};
        return common::make_error(
            ErrorKind::io, fmt::format("cannot read {}: {}", file.string(), std::strerror(errno)));
    }
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#')
            continue;
        line += '\n';
        // A line libssh2 cannot read is skipped, as OpenSSH skips what it does not know.
        libssh2_knownhost_readline(hosts, line.data(), line.size(), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    }
    return {};
}

} // namespace

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

std::string known_hosts_name(const std::string& host, int port) {
    if (port == 22 || port == 0)
        return host;
    return fmt::format("[{}]:{}", host, port);
}

common::Result<HostKeyCheck> check_known_host(const fs::path& file, const std::string& host,
                                              int port, std::string_view blob) {
    const int key_mask = knownhost_key_mask(key_type_of(blob));
    if (key_mask == 0)
        return common::make_error(
            ErrorKind::auth,
            fmt::format("the server's host key has an unsupported type '{}'", key_type_of(blob)));
    KnownHosts known;
    if (!known.hosts)
        return common::make_error(ErrorKind::internal, "libssh2: cannot create a session");
    if (auto ok = read_lines(file, known.hosts); !ok)
        return ok.error();
    libssh2_knownhost* found = nullptr;
    // Port 22 is written without brackets: look it up as a plain name.
    const int rc = libssh2_knownhost_checkp(
        known.hosts, host.c_str(), port == 22 || port == 0 ? -1 : port, blob.data(), blob.size(),
        LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | key_mask, &found);
    HostKeyCheck check;
    if (rc == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
        check.status = HostKeyStatus::known;
    } else if (rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
        check.status = HostKeyStatus::changed;
        if (found && found->key)
            check.known_fingerprint = fingerprint_sha256(unbase64(found->key));
    } else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND) {
        check.status = HostKeyStatus::unknown;
    } else {
        return common::make_error(ErrorKind::internal,
                                  fmt::format("cannot check {} against {}", host, file.string()));
    }
    return check;
}

common::Status add_known_host(const fs::path& file, const std::string& host, int port,
                              std::string_view blob) {
    if (auto ok = common::ensure_directory(file.parent_path(), fs::perms::owner_all); !ok)
        return ok;
    const int fd = ::open(file.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return common::make_error(
            ErrorKind::io, fmt::format("cannot write {}: {}", file.string(), std::strerror(errno)));
    std::string line =
        fmt::format("{} {} {}\n", known_hosts_name(host, port), key_type_of(blob), base64(blob));
    // A file whose last line has no newline must not swallow ours.
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
        char last = '\n';
        if (::pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
            line.insert(line.begin(), '\n');
    }
    const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    const int error = errno;
    ::close(fd);
    if (!ok)
        return common::make_error(
            ErrorKind::io, fmt::format("cannot write {}: {}", file.string(), std::strerror(error)));
    return {};
}

} // namespace cli::transport
