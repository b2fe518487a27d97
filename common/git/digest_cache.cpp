#include <common/fs.hpp>
#include <common/git/digest_cache.hpp>
#include <common/hash.hpp>

#include <fmt/format.h>

#include <fstream>
#include <sys/stat.h>
#include <system_error>

namespace common::git {

namespace fs = std::filesystem;

namespace {

// Past this many lines that this run did not use, the file is written again with the
// ones it did (old commits' files go).
constexpr std::size_t k_stale_lines = 200000;

} // namespace

DigestCache::DigestCache(fs::path file) : m_file(std::move(file)) {
    std::ifstream in(m_file);
    std::string line;
    while (std::getline(in, line)) {
        ++m_lines;
        // "KEY DIGEST SIZE": anything else (a line cut short by a crash) is skipped.
        const auto first = line.find(' ');
        const auto second = first == std::string::npos ? first : line.find(' ', first + 1);
        if (second == std::string::npos || first < 3 || line[1] != ':')
            continue;
        const auto digest = line.substr(first + 1, second - first - 1);
        const auto size = line.substr(second + 1);
        if (!common::is_sha256_hex(digest) || size.empty() || size.size() > 19 ||
            size.find_first_not_of("0123456789") != std::string::npos)
            continue;
        m_known[line.substr(0, first)] = Known{digest, std::stoull(size)};
    }
}

std::optional<DigestCache::Known> DigestCache::find(const std::string& key) {
    if (auto it = m_known.find(key); it != m_known.end()) {
        m_used.insert(key);
        return it->second;
    }
    if (auto it = m_added.find(key); it != m_added.end())
        return it->second;
    return std::nullopt;
}

void DigestCache::add(const std::string& key, const std::string& digest, std::uint64_t size) {
    if (!m_file.empty() && !m_known.count(key))
        m_added[key] = Known{digest, size};
}

std::string DigestCache::file_key(const struct stat& st) {
    return fmt::format("f:{}:{}:{}:{}.{}:{}.{}", st.st_dev, st.st_ino, st.st_size,
                       st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                       st.st_ctim.tv_nsec);
}

void DigestCache::save() {
    const bool rewrite = m_lines - m_used.size() >= k_stale_lines;
    if (m_file.empty() || (m_added.empty() && !rewrite))
        return;
    std::error_code ec;
    fs::create_directories(m_file.parent_path(), ec);
    std::string text;
    auto add_line = [&](const std::string& key, const Known& known) {
        text += fmt::format("{} {} {}\n", key, known.digest, known.size);
    };
    if (rewrite) // what this run used, and what it added
        for (const auto& key : m_used)
            add_line(key, m_known.at(key));
    for (const auto& [key, known] : m_added)
        add_line(key, known);
    (void)common::write_unsynced(m_file, text, !rewrite); // a cache: only costs time
}

} // namespace common::git
