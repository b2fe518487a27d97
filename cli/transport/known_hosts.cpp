#include <cli/transport/known_hosts.hpp>
#include <common/fs.hpp>
#include <common/ssh_key.hpp>

#include <fmt/format.h>
#include <libssh2.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace cli::transport {

using common::base64;
using common::fingerprint_sha256;
using common::key_type_of;
using common::unbase64;

namespace {

using common::ErrorKind;
namespace fs = std::filesystem;

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
