#pragma once
// The agent's unix socket: the API for local users and for SSH (dial-stdio).
// Plain POSIX sockets; no Asio.

#include <agent/api/http.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <string>

namespace agent::api {

inline constexpr const char* k_default_socket = "/run/deploy-agent/agent.sock";

// A connected socket to `path`; ErrorKind::connection with the OS's reason.
common::Result<int> connect_unix(const std::filesystem::path& path);

// Creates the socket's directory (0750) when it is missing, replaces a stale
// socket file (nobody answers on it), binds, makes the file 0660 and listens.
// A path where an agent answers, or that is not a socket, is an io error.
common::Result<int> listen_unix(const std::filesystem::path& path);

// The user on the other end of a connected unix socket (SO_PEERCRED).
Peer unix_peer(int fd);

} // namespace agent::api
