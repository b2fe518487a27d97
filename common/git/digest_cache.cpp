#include <common/fs.hpp>
#include <common/git/digest_cache.hpp>
#include <common/hash.hpp>

#include <fmt/format.h>

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
    auto text = common::read_file(m_file);
    if (!text)
        return; // none yet
    m_text = std::move(*text);
    m_known.reserve(m_text.size() / 100); // a line is about 110 bytes
    std::string_view rest = m_text;
    while (!rest.empty()) {
        const auto end = rest.find('\n');
        const std::string_view line = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        ++m_lines;
        // "KEY DIGEST SIZE": anything else (a line cut short by a crash) is skipped.
        const auto first = line.find(' ');
        const auto second = first == std::string_view::npos ? first : line.find(' ', first + 1);
        if (second == std::string_view::npos || first < 3 || line[1] != ':')
            continue;
        const auto digest = line.substr(first + 1, second - first - 1);
        const auto size = line.substr(second + 1);
        if (!common::is_sha256_hex(digest) || size.empty() || size.size() > 19 ||
            size.find_first_not_of("0123456789") != std::string_view::npos)
            continue;
        std::uint64_t bytes = 0;
        for (const char c : size)
            bytes = bytes * 10 + static_cast<std::uint64_t>(c - '0');
        m_known.insert_or_assign(line.substr(0, first), Loaded{Known{digest, bytes}, false});
    }
}

const DigestCache::Known* DigestCache::find(std::string_view key) {
    if (auto it = m_known.find(key); it != m_known.end()) {
        m_used += !it->second.used;
        it->second.used = true;
        return &it->second.known;
    }
    if (auto it = m_added.find(key); it != m_added.end())
        return &it->second.known;
    return nullptr;
}

const DigestCache::Known* DigestCache::find_git(std::string_view oid) {
    m_key.assign(k_git_prefix).append(oid); // git_key(oid)
    return find(m_key);
}

void DigestCache::add(const std::string& key, std::string_view digest, std::uint64_t size) {
    if (m_file.empty() || m_known.find(std::string_view(key)) != m_known.end())
        return;
    auto& added = m_added[key];
    added.digest = digest;
    added.known = Known{added.digest, size};
}

std::string DigestCache::file_key(const struct stat& st) {
    return fmt::format("f:{}:{}:{}:{}.{}:{}.{}", st.st_dev, st.st_ino, st.st_size,
                       st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                       st.st_ctim.tv_nsec);
}

void DigestCache::save() {
    const bool rewrite = m_lines - m_used >= k_stale_lines;
    if (m_file.empty() || (m_added.empty() && !rewrite))
        return;
    std::error_code ec;
    fs::create_directories(m_file.parent_path(), ec);
    std::string text;
    auto add_line = [&](std::string_view key, const Known& known) {
        text += fmt::format("{} {} {}\n", key, known.digest, known.size);
    };
    if (rewrite) // what this run used, and what it added
        for (const auto& [key, loaded] : m_known)
            if (loaded.used)
                add_line(key, loaded.known);
    for (const auto& [key, added] : m_added)
        add_line(key, added.known);
    (void)common::write_unsynced(m_file, text, !rewrite); // a cache: only costs time
}

} // namespace common::git
