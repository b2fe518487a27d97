#pragma once
// The user's ~/.ssh/known_hosts (OpenSSH format, hashed |1| entries included):
// is this server's host key the one we know? libssh2 stays in the .cpp.

#include <common/result.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace cli::transport {

enum class HostKeyStatus {
    known,   // the file has this key for this host
    unknown, // the file has no key of this type for this host
    changed, // the file has another key of this type for this host
};

struct HostKeyCheck {
    HostKeyStatus status = HostKeyStatus::unknown;
    std::string known_fingerprint; // changed: the fingerprint of the key on file
};

// How known_hosts names a server: "host" on port 22, "[host]:port" otherwise.
std::string known_hosts_name(const std::string& host, int port);

// Looks the key up in `file` (a missing file knows no host). Lines libssh2
// cannot read (unsupported key types, @cert-authority) are skipped.
common::Result<HostKeyCheck> check_known_host(const std::filesystem::path& file,
                                              const std::string& host, int port,
                                              std::string_view blob);

// Appends "NAME TYPE BASE64" to `file`, creating its folder (0700) and the file
// (0600) when missing.
common::Status add_known_host(const std::filesystem::path& file, const std::string& host, int port,
                              std::string_view blob);

} // namespace cli::transport
