#include <cli/credentials.hpp>

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
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT)
            return std::string();
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
        std::string url, token, extra;
        if (!(words >> url) || url.front() == '#')
            continue;
        if (!(words >> token) || (words >> extra))
            return make_error(ErrorKind::config,
                              fmt::format("{}:{}: expected \"URL TOKEN\"", path.string(), number));
        if (without_slash(url) == wanted)
            return token;
    }
    return std::string();
}

common::Result<std::string> token_for(const std::string& base_url) {
    if (const char* token = std::getenv("DEPLOYCTL_TOKEN"); token && *token)
        return std::string(token);
    return read_credentials(credentials_path(), base_url);
}

std::string auth_advice(long status) {
    if (status == 403)
        return "use a token with that scope and app (deploy-agent token create, or deployctl "
               "token create with an admin token)";
    return fmt::format("set DEPLOYCTL_TOKEN, or add a line \"URL TOKEN\" to {} (mode 0600); for "
                       "an agent on this machine, its admin token is in DATA_DIR/admin.token "
                       "(default /var/lib/deploy-agent/admin.token)",
                       credentials_path().string());
}

} // namespace cli
