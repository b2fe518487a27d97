#include <agent/proxy/acme.hpp>
#include <agent/proxy/client_hello.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace agent::proxy::acme {

namespace fs = std::filesystem;

namespace {

// The regular-ish entries of `dir` whose names end in .crt or .key, sorted.
std::vector<std::string> certificate_files(const fs::path& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.ends_with(".crt") || name.ends_with(".key"))
            out.push_back(std::move(name));
    }
    std::sort(out.begin(), out.end());
    return out;
}

// "example.com" or "_.example.com" (the file of "*.example.com").
bool valid_name(std::string_view name) {
    if (name.starts_with("_."))
        name.remove_prefix(2);
    return valid_sni_host(name);
}

// [A-Za-z0-9_-]{1,128}: base64url, as ACME tokens are; no '.', '/' or '%'.
bool valid_token(std::string_view token) {
    if (token.empty() || token.size() > 128)
        return false;
    return std::all_of(token.begin(), token.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

} // namespace

std::vector<Pair> pairs(const fs::path& dir, std::vector<std::string>* problems) {
    std::vector<Pair> out;
    const auto files = certificate_files(dir);
    for (const auto& file : files) {
        if (!file.ends_with(".crt"))
            continue;
        std::string name = file.substr(0, file.size() - 4);
        const fs::path cert = dir / file;
        if (!valid_name(name)) {
            if (problems != nullptr)
                problems->push_back(fmt::format("{}: not a domain's certificate file (NAME.crt, "
                                                "NAME a lower-case host name, _.DOMAIN for a "
                                                "wildcard)",
                                                cert.string()));
            continue;
        }
        if (!std::binary_search(files.begin(), files.end(), name + ".key")) {
            if (problems != nullptr)
                problems->push_back(
                    fmt::format("{}: no key beside it ({}.key)", cert.string(), name));
            continue;
        }
        out.push_back({name, {cert.string(), (dir / (name + ".key")).string()}});
    }
    return out;
}

std::string stamps(const fs::path& acme_dir) {
    std::string out;
    for (const auto sub : {k_certs_dir, k_tls_alpn_dir}) {
        const fs::path dir = acme_dir / sub;
        for (const auto& file : certificate_files(dir)) {
            // The agent writes a key before its certificate: a new key alone is a
            // renewal half done, which must not be loaded (it would not match).
            if (!file.ends_with(".crt"))
                continue;
            struct stat info {};
            if (::stat((dir / file).c_str(), &info) != 0)
                continue; // gone meanwhile: the next look sees the change
            out += fmt::format("{}/{} {} {}.{} {}\n", sub, file, info.st_ino, info.st_mtim.tv_sec,
                               info.st_mtim.tv_nsec, info.st_size);
        }
    }
    return out;
}

std::string_view http_token(std::string_view target) {
    if (!target.starts_with(k_challenge_prefix))
        return {};
    const auto token = target.substr(k_challenge_prefix.size());
    return valid_token(token) ? token : std::string_view();
}

std::optional<std::string> read_http_answer(const fs::path& http_dir, std::string_view token) {
    if (!valid_token(token))
        return std::nullopt;
    const fs::path path = http_dir / std::string(token);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return std::nullopt;
    std::optional<std::string> out;
    struct stat info {};
    if (::fstat(fd, &info) == 0 && S_ISREG(info.st_mode) &&
        static_cast<std::size_t>(info.st_size) <= k_max_http_answer) {
        std::string text(k_max_http_answer + 1, '\0');
        std::size_t got = 0;
        bool failed = false;
        while (got < text.size()) {
            const auto n = ::read(fd, text.data() + got, text.size() - got);
            if (n < 0 && errno == EINTR)
                continue;
            failed = n < 0;
            if (n <= 0)
                break;
            got += static_cast<std::size_t>(n);
        }
        if (!failed && got <= k_max_http_answer) { // grown past the limit meanwhile: none
            text.resize(got);
            out = std::move(text);
        }
    }
    ::close(fd);
    return out;
}

} // namespace agent::proxy::acme
