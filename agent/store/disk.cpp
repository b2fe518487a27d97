#include <agent/store/disk.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <sys/statvfs.h>

namespace agent {

using common::ErrorKind;
using common::make_error;

common::Result<DiskSpace> disk_space(const std::filesystem::path& path) {
    struct statvfs info {};
    if (::statvfs(path.c_str(), &info) != 0)
        return make_error(ErrorKind::io, fmt::format("cannot read the free space of {}: {}",
                                                     path.string(), common::os_error_text(errno)));
    const std::uint64_t unit = info.f_frsize ? info.f_frsize : info.f_bsize;
    return DiskSpace{static_cast<std::uint64_t>(info.f_bavail) * unit,
                     static_cast<std::uint64_t>(info.f_blocks) * unit,
                     static_cast<std::uint64_t>(info.f_favail),
                     static_cast<std::uint64_t>(info.f_files)};
}

std::uint64_t MinFree::reserve(std::uint64_t filesystem_size) const {
    const auto share = static_cast<std::uint64_t>(
        std::ceil(static_cast<double>(filesystem_size) * percent / 100.0));
    if (both)
        return std::min(bytes, share);
    return percent > 0 ? share : bytes;
}

std::string MinFree::describe() const {
    if (both)
        return fmt::format("{} or {}%", common::format_bytes(bytes), percent);
    if (percent > 0)
        return fmt::format("{}%", percent);
    return common::format_bytes(bytes);
}

common::Result<MinFree> parse_min_free(std::string_view text) {
    const auto bad = [&] {
        return make_error(ErrorKind::config,
                          fmt::format("invalid free space to keep \"{}\" (expected a size such as "
                                      "\"1g\" or \"512m\", a share such as \"5%\", or \"0\")",
                                      text));
    };
    MinFree out;
    out.both = false;
    if (!text.empty() && text.back() == '%') {
        std::string number(text.substr(0, text.size() - 1));
        char* end = nullptr;
        errno = 0;
        const double value = std::strtod(number.c_str(), &end);
        if (number.empty() || end != number.c_str() + number.size() || errno != 0 ||
            !(value >= 0 && value <= 90))
            return bad();
        out.percent = value;
        out.bytes = 0;
        return out;
    }
    auto size = common::parse_size(text);
    if (!size)
        return bad();
    out.bytes = *size;
    out.percent = 0;
    return out;
}

common::Status DiskGuard::check(std::uint64_t bytes, std::string_view what,
                                std::uint64_t files) const {
    if (m_dir.empty())
        return {};
    auto space = disk_space(m_dir);
    if (!space)
        return {}; // cannot tell: the write itself says so if it fails
    return check_space(*space, m_min_free, m_dir, bytes, files, what);
}

std::uint64_t inode_reserve(const DiskSpace& space, std::uint64_t reserve) {
    if (space.size == 0)
        return 0;
    return static_cast<std::uint64_t>(
        std::ceil(static_cast<double>(space.files) * static_cast<double>(reserve) /
                  static_cast<double>(space.size)));
}

common::Status check_space(const DiskSpace& space, const MinFree& min_free,
                           const std::filesystem::path& dir, std::uint64_t bytes,
                           std::uint64_t files, std::string_view what) {
    const std::uint64_t reserve = min_free.reserve(space.size);
    const bool bytes_fit = space.free >= reserve && space.free - reserve >= bytes;
    const auto file_reserve = inode_reserve(space, reserve);
    const bool files_fit = space.files == 0 || (space.free_files >= file_reserve &&
                                                space.free_files - file_reserve >= files);
    if (bytes_fit && files_fit)
        return {};
    std::string message;
    if (!bytes_fit) {
        message = fmt::format("the agent's disk is full: {} free in {}",
                              common::format_bytes(space.free), dir.string());
        if (bytes > 0)
            message += fmt::format(", {} needs {}", what, common::format_bytes(bytes));
        else
            message += fmt::format(", too little for {}", what);
        if (reserve > 0)
            message += fmt::format(" (and {} is kept free: deploy-agent --min-free {})",
                                   common::format_bytes(reserve), min_free.describe());
    } else {
        message = fmt::format("the agent's disk is full: {} more files fit in {} (its file "
                              "system has {} inodes in all)",
                              space.free_files, dir.string(), space.files);
        if (files > 0)
            message += fmt::format(", {} needs {}", what, files);
        else
            message += fmt::format(", too few for {}", what);
        if (file_reserve > 0)
            message += fmt::format(" (and {} are kept free, the share of deploy-agent "
                                   "--min-free {})",
                                   file_reserve, min_free.describe());
    }
    message += "; free some space (deployctl agent df, deployctl agent prune) and deploy again";
    return make_error(ErrorKind::disk_full, std::move(message));
}

} // namespace agent
