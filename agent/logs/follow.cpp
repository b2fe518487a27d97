#include <agent/logs/follow.hpp>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sys/stat.h>
#include <system_error>

namespace agent::logs {

namespace {

constexpr std::size_t k_read_chunk = 256 * 1024;

} // namespace

LineReader::LineReader(std::filesystem::path path) : m_path(std::move(path)) {}

LineReader::LineReader(std::filesystem::path path, std::uint64_t offset)
    : m_path(std::move(path)), m_offset(offset) {}

std::vector<std::string> LineReader::read_new_lines() {
    std::vector<std::string> lines;
    struct stat st {};
    if (::stat(m_path.c_str(), &st) != 0)
        return lines; // not written yet
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const bool replaced = m_inode != 0 && m_inode != st.st_ino;
    m_inode = st.st_ino;
    if (size < m_offset || replaced) { // truncated, or rotated: start over
        m_offset = 0;
        m_partial.clear();
    }
    if (size == m_offset)
        return lines;
    std::ifstream in(m_path, std::ios::binary);
    if (!in)
        return lines; // vanished between stat and open: try again next time
    in.seekg(static_cast<std::streamoff>(m_offset));
    char buffer[k_read_chunk];
    while (in) {
        in.read(buffer, sizeof buffer);
        const auto got = static_cast<std::size_t>(in.gcount());
        if (got == 0)
            break;
        m_offset += got;
        m_partial.append(buffer, got);
        split_lines(lines);
    }
    return lines;
}

void LineReader::split_lines(std::vector<std::string>& lines) {
    std::size_t start = 0;
    while (true) {
        const auto newline = m_partial.find('\n', start);
        if (newline == std::string::npos)
            break;
        // A long line in pieces of k_max_line_length, wherever the reads ended.
        for (auto at = start; at < newline; at += k_max_line_length)
            lines.emplace_back(m_partial, at, std::min(k_max_line_length, newline - at));
        start = newline + 1;
    }
    m_partial.erase(0, start);
    while (m_partial.size() >= k_max_line_length) {
        lines.emplace_back(m_partial, 0, k_max_line_length);
        m_partial.erase(0, k_max_line_length);
    }
}

} // namespace agent::logs
