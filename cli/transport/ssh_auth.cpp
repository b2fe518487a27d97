// Public-key login: ssh-agent first, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa (or the ssh
// config's IdentityFile keys; with IdentitiesOnly, only the ssh-agent keys of those files);
// or only the target's identity_file.

#include <cli/transport/ssh_session.hpp>
#include <common/ssh_key.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <vector>

namespace cli::transport {

namespace detail {

namespace fs = std::filesystem;
using common::ErrorKind;

fs::path expand_home(const std::string& path, const fs::path& home) {
    if (path == "~")
        return home;
    if (path.starts_with("~/"))
        return home / path.substr(2);
    return path;
}

namespace {

// "~/.ssh/id_ed25519" for paths under HOME, for shorter messages.
std::string shown(const fs::path& path, const fs::path& home) {
    const auto relative = path.lexically_relative(home);
    if (!relative.empty() && !relative.string().starts_with(".."))
        return "~/" + relative.string();
    return path.string();
}

// Tries every identity of a running ssh-agent (only those whose key blob is in `only`,
// when given); adds what was tried to `tried`.
bool try_agent(LIBSSH2_SESSION* session, const std::string& user,
               const std::optional<std::vector<std::string>>& only,
               std::vector<std::string>& tried) {
    const char* socket = std::getenv("SSH_AUTH_SOCK");
    if (!socket || !*socket)
        return false;
    LIBSSH2_AGENT* agent = libssh2_agent_init(session);
    if (!agent)
        return false;
    int keys = 0;
    bool ok = false;
    if (libssh2_agent_connect(agent) != 0) {
        tried.push_back(fmt::format("ssh-agent (cannot connect to {})", socket));
    } else {
        if (libssh2_agent_list_identities(agent) == 0) {
            libssh2_agent_publickey* identity = nullptr;
            libssh2_agent_publickey* previous = nullptr;
            while (!ok && libssh2_agent_get_identity(agent, &identity, previous) == 0) {
                previous = identity;
                const std::string blob(reinterpret_cast<const char*>(identity->blob),
                                       identity->blob_len);
                if (only && std::find(only->begin(), only->end(), blob) == only->end())
                    continue;
                ++keys;
                ok = libssh2_agent_userauth(agent, user.c_str(), identity) == 0;
            }
        }
        tried.push_back(fmt::format("ssh-agent with {} key{}", keys, keys == 1 ? "" : "s"));
        libssh2_agent_disconnect(agent);
    }
    libssh2_agent_free(agent);
    return ok;
}

bool try_key_file(LIBSSH2_SESSION* session, const std::string& user, const fs::path& key,
                  const fs::path& home, std::vector<std::string>& tried) {
    std::error_code ec;
    const fs::path pub = key.string() + ".pub";
    const bool has_pub = fs::exists(pub, ec);
    const int rc = libssh2_userauth_publickey_fromfile_ex(
        session, user.c_str(), static_cast<unsigned>(user.size()), has_pub ? pub.c_str() : nullptr,
        key.c_str(), nullptr);
    if (rc == 0)
        return true;
    if (rc == LIBSSH2_ERROR_FILE)
        tried.push_back(fmt::format("{} (cannot use it: {}; a key with a passphrase needs "
                                    "ssh-agent)",
                                    shown(key, home), ssh_error_message(session)));
    else
        tried.push_back(shown(key, home));
    return false;
}

std::vector<fs::path> key_files(const SshOptions& options) {
    if (!options.identity_file.empty())
        return {expand_home(options.identity_file, options.home)};
    std::vector<fs::path> keys;
    std::error_code ec;
    if (!options.identity_files.empty()) {
        for (const auto& file : options.identity_files)
            if (fs::exists(file, ec)) // a missing IdentityFile is skipped, as by ssh
                keys.emplace_back(file);
        return keys;
    }
    for (const char* name : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
        const auto path = options.home / ".ssh" / name;
        if (fs::exists(path, ec))
            keys.push_back(path);
    }
    return keys;
}

// IdentitiesOnly: the key blobs of the .pub files beside `keys`.
std::vector<std::string> public_blobs(const std::vector<fs::path>& keys) {
    std::vector<std::string> blobs;
    for (const auto& key : keys) {
        std::ifstream in(key.string() + ".pub");
        std::string line;
        if (std::getline(in, line))
            if (auto parsed = common::parse_public_key(line))
                blobs.push_back(parsed->blob);
    }
    return blobs;
}

} // namespace

common::Status authenticate(LIBSSH2_SESSION* session, const SshOptions& options) {
    const auto& user = options.user;
    const char* methods =
        libssh2_userauth_list(session, user.c_str(), static_cast<unsigned>(user.size()));
    if (!methods && libssh2_userauth_authenticated(session))
        return {}; // the server let us in without credentials
    const auto where = ssh_address(options);
    if (!methods || !std::strstr(methods, "publickey"))
        return common::make_error(
            ErrorKind::auth, fmt::format("ssh: {} does not offer public-key login (it offers: {})",
                                         where, methods ? methods : ssh_error_message(session)));
    const auto keys = key_files(options);
    std::error_code ec;
    if (!options.identity_file.empty() && !fs::exists(keys.front(), ec))
        return common::make_error(
            ErrorKind::config,
            fmt::format("identity_file {} does not exist (set in deploy.toml for this target)",
                        keys.front().string()));
    std::vector<std::string> tried;
    std::optional<std::vector<std::string>> only;
    if (options.identities_only)
        only = public_blobs(keys);
    if (options.identity_file.empty() && !(only && only->empty()) &&
        try_agent(session, user, only, tried))
        return {};
    for (const auto& key : keys)
        if (try_key_file(session, user, key, options.home, tried))
            return {};
    if (tried.empty())
        tried.push_back(options.identity_files.empty()
                            ? "no keys: SSH_AUTH_SOCK is not set and there is no "
                              "~/.ssh/id_ed25519, id_ecdsa or id_rsa"
                            : fmt::format("no keys: SSH_AUTH_SOCK is not set and none of the "
                                          "ssh config's IdentityFile exists ({})",
                                          fmt::join(options.identity_files, ", ")));
    return common::make_error(
        ErrorKind::auth,
        fmt::format("ssh: permission denied for {} (tried: {})", where, fmt::join(tried, ", ")));
}

} // namespace detail

} // namespace cli::transport
