#include <agent/logs/rotating_file.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

namespace agent::logs {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;

namespace {

common::Error os_error(std::string_view what, const fs::path& path, int error) {
    return make_error(common::io_error_kind(error),
                      fmt::format("{} {}: {}", what, path.string(), common::os_error_text(error)));
}

// Compresses `from` into `to` (through a temporary file and a rename), then
// removes `from`.
common::Status compress_file(const fs::path& from, const fs::path& to) {
    auto text = common::read_file(from);
    if (!text)
        return text.error();
    std::string packed(ZSTD_compressBound(text->size()), '\0');
    const std::size_t size =
        ZSTD_compress(packed.data(), packed.size(), text->data(), text->size(), 3);
    if (ZSTD_isError(size))
        return make_error(ErrorKind::internal, fmt::format("cannot compress {}: {}", from.string(),
                                                           ZSTD_getErrorName(size)));
    packed.resize(size);
    TRY(common::atomic_write_file(to, packed, 0600));
    std::error_code ec;
    fs::remove(from, ec);
    return {};
}

} // namespace

RotatingFile::RotatingFile(fs::path path, Rotation rotation)
    : m_path(std::move(path)), m_rotation(rotation) {}

RotatingFile::~RotatingFile() {
    if (m_fd >= 0)
        ::close(m_fd);
}

common::Status RotatingFile::ensure_open() {
    struct stat now {};
    if (m_fd >= 0 && ::stat(m_path.c_str(), &now) == 0 && now.st_ino == m_inode)
        return {};
    if (m_fd >= 0) // another writer rotated it (or it was removed): the new PATH
        ::close(m_fd);
    m_fd = ::open(m_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (m_fd < 0)
        return os_error("cannot open the log", m_path, errno);
    struct stat opened {};
    ::fstat(m_fd, &opened);
    m_inode = opened.st_ino;
    return {};
}

common::Status RotatingFile::write(std::string_view text) {
    TRY(ensure_open());
    while (!text.empty()) {
        const ssize_t n = ::write(m_fd, text.data(), text.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return os_error("cannot write the log", m_path, errno);
        text.remove_prefix(static_cast<std::size_t>(n));
    }
    if (m_rotation.max_size == 0)
        return {};
    struct stat st {};
    if (::fstat(m_fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) < m_rotation.max_size)
        return {};
    return rotate();
}

common::Status RotatingFile::rotate() {
    std::error_code ec;
    const int keep = m_rotation.keep;
    if (keep <= 0) { // nothing kept: start again
        if (::ftruncate(m_fd, 0) != 0)
            return os_error("cannot truncate the log", m_path, errno);
        return {};
    }
    fs::remove(rotated_path(m_path, keep), ec);
    for (int n = keep - 1; n >= 1; --n)
        if (fs::exists(rotated_path(m_path, n), ec))
            fs::rename(rotated_path(m_path, n), rotated_path(m_path, n + 1), ec);
    // PATH -> PATH.1 (uncompressed for a moment), a new PATH for the next write.
    const fs::path plain = m_path.string() + ".1";
    if (::rename(m_path.c_str(), plain.c_str()) != 0)
        return os_error("cannot rotate the log", m_path, errno);
    // The new PATH exists before the old file is unlinked: it cannot get the old
    // one's inode number, which is how a follower (LineReader) sees the change.
    auto opened = ensure_open();
    auto compressed = compress_file(plain, rotated_path(m_path, 1));
    if (!compressed) {
        fs::remove(plain, ec); // never keep more than the bound
        return compressed.error();
    }
    return opened;
}

fs::path rotated_path(const fs::path& path, int generation) {
    return path.string() + "." + std::to_string(generation) + ".zst";
}

std::vector<fs::path> rotated_files(const fs::path& path) {
    std::vector<fs::path> out;
    std::error_code ec;
    for (int n = 1; n <= 1000 && fs::exists(rotated_path(path, n), ec); ++n)
        out.insert(out.begin(), rotated_path(path, n));
    return out;
}

common::Status read_log_pieces(const fs::path& path,
                               const std::function<bool(std::string_view)>& each) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return os_error("cannot read", path, errno);
    std::unique_ptr<int, void (*)(int*)> closer(new int(fd), [](int* f) {
        ::close(*f);
        delete f;
    });
    const bool compressed = path.extension() == ".zst";
    std::unique_ptr<ZSTD_DCtx, std::size_t (*)(ZSTD_DCtx*)> context(
        compressed ? ZSTD_createDCtx() : nullptr, ZSTD_freeDCtx);
    if (compressed && !context)
        return make_error(ErrorKind::internal,
                          "cannot decompress " + path.string() + ": out of memory");
    std::string in(compressed ? ZSTD_DStreamInSize() : 1024 * 1024, '\0');
    std::string out(compressed ? ZSTD_DStreamOutSize() : 0, '\0');
    std::size_t pending = 0; // zstd: nonzero while a frame is not complete
    for (;;) {
        const ssize_t got = ::read(fd, in.data(), in.size());
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return os_error("cannot read", path, errno);
        if (got == 0)
            break;
        if (!compressed) {
            if (!each(std::string_view(in.data(), static_cast<std::size_t>(got))))
                return {};
            continue;
        }
        ZSTD_inBuffer input{in.data(), static_cast<std::size_t>(got), 0};
        while (input.pos < input.size) {
            ZSTD_outBuffer output{out.data(), out.size(), 0};
            pending = ZSTD_decompressStream(context.get(), &output, &input);
            if (ZSTD_isError(pending))
                return make_error(ErrorKind::io,
                                  fmt::format("cannot decompress {}: {}", path.string(),
                                              ZSTD_getErrorName(pending)));
            if (output.pos > 0 && !each(std::string_view(out.data(), output.pos)))
                return {};
        }
    }
    if (pending != 0)
        return make_error(ErrorKind::io, "cannot decompress " + path.string() +
                                             ": the file ends within a zstd frame");
    return {};
}

common::Result<std::string> read_log_file(const fs::path& path) {
    std::string text;
    TRY(read_log_pieces(path, [&text](std::string_view piece) {
        text.append(piece);
        return true;
    }));
    return text;
}

} // namespace agent::logs
