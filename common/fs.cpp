#include <common/fs.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

namespace common {

namespace {

Error errno_error(std::string_view what, const std::filesystem::path& path) {
    const int error = errno;
    return make_error(io_error_kind(error),
                      fmt::format("{} {}: {}", what, path.string(), os_error_text(error)));
}

std::string temp_suffix() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    return fmt::format(".tmp-{}-{:x}", ::getpid(), rng());
}

Status write_all(int fd, std::string_view content, const std::filesystem::path& path) {
    if (!common::write_all(fd, content))
        return errno_error("cannot write", path);
    return {};
}

} // namespace

bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = EIO;
        if (n <= 0)
            return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

ErrorKind io_error_kind(int error) {
    return error == ENOSPC || error == EDQUOT ? ErrorKind::disk_full : ErrorKind::io;
}

std::string os_error_text(int error) {
    std::string text = std::strerror(error);
    if (error == ENOSPC)
        text += ": the disk is full (free some space on it)";
    else if (error == EDQUOT)
        text += ": the disk quota is used up (free some space, or raise the quota)";
    return text;
}

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
        if (::unlink(temp.c_str()) != 0 && errno != ENOENT)
            ::unlink(temp.c_str()); // once more; else remove_temp_files() at the next start
        return written;
    }
    auto parent = path.parent_path();
    return fsync_dir(parent.empty() ? std::filesystem::path(".") : parent);
}

Status write_unsynced(const std::filesystem::path& path, std::string_view content, bool append) {
    const auto target = append ? path : std::filesystem::path(path.string() + temp_suffix());
    const int fd =
        ::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_EXCL), 0644);
    if (fd < 0)
        return errno_error("cannot create", target);
    auto written = write_all(fd, content, target);
    if (::close(fd) != 0 && written)
        written = errno_error("cannot close", target);
    if (!append && written && ::rename(target.c_str(), path.c_str()) != 0)
        written = errno_error("cannot rename onto", path);
    if (!append && !written)
        ::unlink(target.c_str()); // else remove_temp_files() at the next start
    return written;
}

std::size_t remove_temp_files(const std::filesystem::path& dir) {
    std::size_t removed = 0;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        const auto at = name.rfind(".tmp-");
        if (at == std::string::npos || at == 0)
            continue;
        const std::string rest = name.substr(at + 5); // PID-HEX
        const auto dash = rest.find('-');
        if (dash == std::string::npos || dash == 0 || dash + 1 == rest.size() ||
            rest.find_first_not_of("0123456789") != dash ||
            rest.find_first_not_of("0123456789abcdef", dash + 1) != std::string::npos)
            continue;
        std::error_code kind;
        if (!it->is_regular_file(kind))
            continue;
        if (std::filesystem::exists("/proc/" + rest.substr(0, dash), kind))
            continue; // its writer runs (or its pid was reused: it goes next time)
        std::error_code gone;
        if (std::filesystem::remove(it->path(), gone))
            ++removed;
    }
    return removed;
}

bool read_all(int fd, std::string& out, std::size_t size_hint) {
    // Read to the end whatever the hint said (a file may grow or be a /proc file of size 0),
    // into a string sized from it first: one allocation and no copy for a regular file.
    out.resize(size_hint > 0 ? size_hint + 1 : 4096);
    std::size_t used = 0;
    for (;;) {
        if (used == out.size())
            out.resize(out.size() * 2);
        const auto n = ::read(fd, out.data() + used, out.size() - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n == 0)
            break;
        used += static_cast<std::size_t>(n);
    }
    out.resize(used);
    return true;
}

std::optional<std::string> read_regular_file(const std::filesystem::path& path,
                                             const std::function<bool(std::uint64_t)>& wanted) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return std::nullopt;
    struct stat st {};
    std::string bytes;
    const bool read = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                      wanted(static_cast<std::uint64_t>(st.st_size)) &&
                      read_all(fd, bytes, static_cast<std::size_t>(st.st_size));
    ::close(fd);
    if (!read)
        return std::nullopt;
    return bytes;
}

Result<std::string> read_file(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno_error("cannot read", path);
    struct Close {
        int fd;
        ~Close() { ::close(fd); }
    } close_fd{fd};
    struct stat st {};
    const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
    std::string out;
    if (!read_all(fd, out, regular ? static_cast<std::size_t>(st.st_size) : 0))
        return errno_error("error reading", path);
    return out;
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
