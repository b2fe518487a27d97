#include <agent/api/unix_socket.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace agent::api {

namespace fs = std::filesystem;

namespace {

using common::ErrorKind;

common::Result<sockaddr_un> address_of(const fs::path& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const auto& text = path.native();
    if (text.empty() || text.size() >= sizeof address.sun_path)
        return common::make_error(ErrorKind::usage,
                                  fmt::format("socket path '{}' must be 1 to {} bytes long", text,
                                              sizeof address.sun_path - 1));
    std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
    return address;
}

common::Error io_error(const std::string& what, const fs::path& path, int error) {
    return common::make_error(ErrorKind::io,
                              fmt::format("{} {}: {}", what, path.string(), std::strerror(error)));
}

// Leaves `path` free for bind(): removes a socket file nobody answers on.
common::Status clear_stale(const fs::path& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return errno == ENOENT ? common::Status{} : io_error("cannot inspect", path, errno);
    if (!S_ISSOCK(st.st_mode))
        return common::make_error(
            ErrorKind::io,
            fmt::format("{} exists and is not a socket: remove it or choose another --socket",
                        path.string()));
    if (auto fd = connect_unix(path)) {
        ::close(*fd);
        return common::make_error(
            ErrorKind::io,
            fmt::format("another deploy-agent is already serving on {}: stop it first, or "
                        "choose another --socket",
                        path.string()));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return io_error("cannot remove the stale socket", path, errno);
    return {};
}

} // namespace

common::Result<int> connect_unix(const fs::path& path) {
    auto address = address_of(path);
    if (!address)
        return address.error();
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return common::make_error(ErrorKind::connection,
                                  fmt::format("socket(): {}", std::strerror(errno)));
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&*address), sizeof *address) != 0) {
        const int error = errno;
        ::close(fd);
        return common::make_error(
            ErrorKind::connection,
            fmt::format("cannot connect to {}: {}", path.string(), std::strerror(error)));
    }
    return fd;
}

common::Result<int> listen_unix(const fs::path& path) {
    auto address = address_of(path);
    if (!address)
        return address.error();
    constexpr auto k_dir_perms =
        fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec; // 0750
    if (auto ok = common::ensure_directory(path.parent_path(), k_dir_perms); !ok)
        return ok.error();
    if (auto ok = clear_stale(path); !ok)
        return ok.error();
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return io_error("cannot create a socket for", path, errno);
    // Nobody can connect before listen(): the mode is right before anyone can use it.
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&*address), sizeof *address) != 0 ||
        ::chmod(path.c_str(), 0660) != 0 || ::listen(fd, SOMAXCONN) != 0) {
        const int error = errno;
        ::close(fd);
        return io_error("cannot listen on", path, error);
    }
    return fd;
}

// Whether process `pid` runs in an SSH session: sshd itself (deployctl's
// direct-streamlocal channels, which sshd connects as the logged-in user), or
// dial-stdio started by sshd (SSH_CONNECTION in its environment). Unreadable
// (another user's process while the agent is not root) reads as no.
static bool in_ssh_session(pid_t pid) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    if (std::string name; std::getline(comm, name) && name == "sshd")
        return true;
    std::ifstream environ("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
    std::string entry;
    while (std::getline(environ, entry, '\0'))
        if (entry.rfind("SSH_CONNECTION=", 0) == 0)
            return true;
    return false;
}

Peer unix_peer(int fd) {
    Peer peer;
    peer.unix_socket = true;
    ucred credentials{};
    socklen_t length = sizeof credentials;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0)
        return peer;
    peer.uid = static_cast<long>(credentials.uid);
    std::vector<char> buffer(4096);
    passwd entry{};
    passwd* found = nullptr;
    if (::getpwuid_r(credentials.uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found)
        peer.user = found->pw_name;
    else
        peer.user = std::to_string(credentials.uid);
    peer.via_ssh = in_ssh_session(credentials.pid);
    return peer;
}

} // namespace agent::api
