#include <common/fs.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

namespace common {

namespace {

Error errno_error(std::string_view what, const std::filesystem::path& path) {
    return make_error(ErrorKind::io,
                      fmt::format("{} {}: {}", what, path.string(), std::strerror(errno)));
}

std::string temp_suffix() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    return fmt::format(".tmp-{}-{:x}", ::getpid(), rng());
}

Status write_all(int fd, std::string_view content, const std::filesystem::path& path) {
    while (!content.empty()) {
        const ssize_t n = ::write(fd, content.data(), content.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno_error("cannot write", path);
        }
        content.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

} // namespace

Status fsync_dir(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno_error("cannot open directory", dir);
    const int rc = ::fsync(fd);
    ::close(fd);
    if (rc != 0)
        return errno_error("cannot fsync directory", dir);
    return {};
}

Status atomic_write_file(const std::filesystem::path& path, std::string_view content,
                         unsigned mode) {
    const auto temp = std::filesystem::path(path.string() + temp_suffix());
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return errno_error("cannot create", temp);
    auto written = write_all(fd, content, temp);
    if (written && ::fsync(fd) != 0)
        written = errno_error("cannot fsync", temp);
    if (::close(fd) != 0 && written)
        written = errno_error("cannot close", temp);
    if (written && ::rename(temp.c_str(), path.c_str()) != 0)
        written = errno_error("cannot rename onto", path);
    if (!written) {
        ::unlink(temp.c_str());
        return written;
    }
    auto parent = path.parent_path();
    return fsync_dir(parent.empty() ? std::filesystem::path(".") : parent);
}

Result<std::string> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return errno_error("cannot read", path);
    std::ostringstream out;
    out << in.rdbuf();
    if (in.bad())
        return errno_error("error reading", path);
    return out.str();
}

Status ensure_directory(const std::filesystem::path& dir, std::filesystem::perms perms) {
    std::error_code ec;
    if (dir.empty() || std::filesystem::is_directory(dir, ec))
        return {};
    std::filesystem::create_directories(dir, ec);
    if (!ec)
        std::filesystem::permissions(dir, perms, ec);
    if (ec)
        return make_error(ErrorKind::io,
                          fmt::format("cannot create {}: {}", dir.string(), ec.message()));
    return {};
}

} // namespace common
