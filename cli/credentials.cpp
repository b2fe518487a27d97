#include <cli/credentials.hpp>
#include <common/fingerprint.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace cli {

namespace {

using common::ErrorKind;
using common::make_error;

std::string without_slash(std::string url) {
    while (!url.empty() && url.back() == '/')
        url.pop_back();
    return url;
}

} // namespace

std::filesystem::path credentials_path() {
    const char* xdg = std::getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg)
        return std::filesystem::path(xdg) / "deployctl" / "credentials";
    const char* home = std::getenv("HOME");
    return std::filesystem::path(home ? home : ".") / ".config" / "deployctl" / "credentials";
}

common::Result<std::string> read_credentials(const std::filesystem::path& path,
                                             const std::string& base_url) {
    TRY_ASSIGN(auto line, read_credential(path, base_url));
    return line.token;
}

common::Result<Credential> read_credential(const std::filesystem::path& path,
                                           const std::string& base_url) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT)
            return Credential{};
        return make_error(ErrorKind::auth,
                          fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
    }
    if (st.st_mode & 077)
        return make_error(
            ErrorKind::auth,
            fmt::format("refusing {}: it is readable by others (mode {:04o}); run: chmod 600 {}",
                        path.string(), st.st_mode & 07777, path.string()));
    std::ifstream in(path);
    if (!in)
        return make_error(ErrorKind::auth, fmt::format("cannot read {}", path.string()));
    const auto wanted = without_slash(base_url);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        std::istringstream words(line);
        std::string url, token, pin, extra;
        if (!(words >> url) || url.front() == '#')
            continue;
        if (!(words >> token) || (words >> pin && words >> extra))
            return make_error(
                ErrorKind::config,
                fmt::format("{}:{}: expected \"URL TOKEN [FINGERPRINT]\"", path.string(), number));
        Credential found{token, {}};
        if (!pin.empty()) {
            auto canonical = common::parse_fingerprint(pin);
            if (!canonical)
                return make_error(ErrorKind::config, fmt::format("{}:{}: {}", path.string(), number,
                                                                 canonical.error().message));
            found.fingerprint = *canonical;
        }
        if (without_slash(url) == wanted)
            return found;
    }
    return Credential{};
}

common::Result<bool> store_credentials(const std::filesystem::path& path,
                                       const std::string& base_url, const std::string& token,
                                       const std::string& fingerprint) {
    if (auto check = read_credentials(path, base_url); !check)
        return check.error();
    if (auto dir = common::ensure_directory(path.parent_path(), std::filesystem::perms::owner_all);
        !dir)
        return dir.error();
    std::string text;
    if (std::filesystem::exists(path)) {
        auto old = common::read_file(path);
        if (!old)
            return old.error();
        text = std::move(*old);
    }
    const auto wanted = without_slash(base_url);
    std::string kept;
    bool replaced = false;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream words(line);
        std::string url;
        if (words >> url && url.front() != '#' && without_slash(url) == wanted) {
            replaced = true;
            continue;
        }
        kept += line + '\n';
    }
    kept += wanted + ' ' + token + (fingerprint.empty() ? "" : " " + fingerprint) + '\n';
    if (auto ok = common::atomic_write_file(path, kept, 0600); !ok)
        return ok.error();
    return replaced;
}

common::Result<AgentToken> token_for(const std::string& base_url) {
    TRY_ASSIGN(auto line, read_credential(credentials_path(), base_url));
    if (!line.token.empty())
        return AgentToken{line.token, TokenSource::file, line.fingerprint};
    if (const char* token = std::getenv("DEPLOYCTL_TOKEN"); token && *token)
        return AgentToken{token, TokenSource::environment, line.fingerprint};
    return AgentToken{};
}

std::string auth_error_message(long status, std::string_view message, std::string_view base_url,
                               TokenSource source) {
    const auto file = credentials_path().string();
    const auto add_line =
        fmt::format("add a line for it to {} with `deployctl login {}`", file, base_url);
    switch (source) {
    case TokenSource::environment:
        if (status == 403)
            return fmt::format(
                "{} refused the token from DEPLOYCTL_TOKEN (HTTP {}): {}; use a token with that "
                "scope and app (deploy-agent token create, or deployctl token create with an "
                "admin token): {}, or set DEPLOYCTL_TOKEN to it",
                base_url, status, message, add_line);
        return fmt::format("{} refused the token from DEPLOYCTL_TOKEN (HTTP {}): {}; {}, or set "
                           "DEPLOYCTL_TOKEN to that agent's token",
                           base_url, status, message, add_line);
    case TokenSource::file:
        if (status == 403)
            return fmt::format(
                "{} refused the token for it in {} (HTTP {}): {}; use a token with that scope "
                "and app (deploy-agent token create, or deployctl token create with an admin "
                "token): replace that line's token with it, `deployctl login {}` (the line wins "
                "over DEPLOYCTL_TOKEN)",
                base_url, file, status, message, base_url);
        return fmt::format("{} refused the token for it in {} (HTTP {}): {}; replace that line's "
                           "token with that agent's token, `deployctl login {}`, or remove the "
                           "line to use DEPLOYCTL_TOKEN (the line wins over it)",
                           base_url, file, status, message, base_url);
    case TokenSource::given:
        return fmt::format("{} refused the token given (HTTP {}): {}; is it that agent's token? "
                           "(deploy-agent token create on that machine, or its "
                           "DATA_DIR/admin.token)",
                           base_url, status, message);
    case TokenSource::none:
        break;
    }
    return fmt::format("{} needs a token and deployctl has none for it (HTTP {}): {}; set "
                       "DEPLOYCTL_TOKEN, or {}; for an agent on this machine, its admin token is "
                       "in DATA_DIR/admin.token (default /var/lib/deploy-agent/admin.token)",
                       base_url, status, message, add_line);
}

} // namespace cli
