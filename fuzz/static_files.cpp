// deploy-proxy serving a [static] release: agent::proxy::serve_static on a real
// directory that holds traps (symlinks out of the root, absolute symlinks, a
// FIFO, a secret file beside the root). Input: the request-target, then, one per
// line, Range, If-Range, If-None-Match, If-Modified-Since, Accept-Encoding.
// Properties:
// - parse_url_path: segments are never "", "." or ".." and hold no '/', '\\',
//   NUL or control byte; url_path_string() of them parses back to the same;
// - a reply with a file: the open file is a regular file inside the root (its
//   real path, read back from /proc), never the secret; its byte range lies
//   within the file; a 206 says which range;
// - a redirect stays on this site: its Location is a path ("/x", not "//x");
// - parse_range: a satisfiable range is within the representation.

#include <agent/proxy/static_files.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "check.hpp"

namespace {

namespace fs = std::filesystem;
using namespace agent::proxy;

class Site {
  public:
    std::string root;   // real path of the site directory
    std::string secret; // a file beside it that must never be served

    Site() {
        char base[] = "/tmp/deployctl-fuzz-static-XXXXXX";
        const fs::path dir = ::mkdtemp(base);
        const fs::path site = dir / "site";
        auto write = [](const fs::path& path, std::string_view text) {
            fs::create_directories(path.parent_path());
            std::ofstream(path) << text;
        };
        write(dir / "secret.txt", "secret\n");
        write(site / "index.html", "<h1>home</h1>\n");
        write(site / "app.js", "console.log(1)\n");
        write(site / "app.js.gz", "not really gzip\n");
        write(site / "docs/index.html", "<h1>docs</h1>\n");
        write(site / "docs/page one.html", "page\n");
        write(site / "docs/.hidden", "hidden\n");
        fs::create_directories(site / "empty");
        fs::create_symlink("../secret.txt", site / "leak");
        fs::create_symlink("/etc/passwd", site / "passwd");
        fs::create_symlink("..", site / "up");
        fs::create_symlink("app.js", site / "alias.js");
        fs::create_symlink("docs", site / "docs-link");
        write(site / "notes.txt", "notes\n");
        fs::create_symlink("../secret.txt", site / "notes.txt.gz");
        fs::create_symlink("../../secret.txt", site / "docs/leak.gz");
        ::mkfifo((site / "pipe").c_str(), 0600);
        root = fs::canonical(site).string();
        secret = fs::canonical(dir / "secret.txt").string();
        m_dir = dir;
    }
    ~Site() {
        std::error_code ec;
        fs::remove_all(m_dir, ec);
    }

  private:
    fs::path m_dir;
};

const Site& site() {
    static const Site s;
    return s;
}

std::string fd_path(int fd) {
    return fs::read_symlink("/proc/self/fd/" + std::to_string(fd)).string();
}

void check_url(std::string_view target) {
    auto url = parse_url_path(target);
    if (!url)
        return;
    for (const auto& segment : url->segments) {
        FUZZ_CHECK(!segment.empty() && segment != "." && segment != "..");
        for (char c : segment) {
            const auto byte = static_cast<unsigned char>(c);
            FUZZ_CHECK(c != '/' && c != '\\' && byte >= 0x20 && byte != 0x7f);
        }
    }
    const std::string again = url_path_string(*url);
    auto reparsed = parse_url_path(again);
    FUZZ_CHECK(reparsed && reparsed->segments == url->segments);
}

void check_reply(const StaticReply& reply, std::string_view target) {
    if (reply.file) {
        FUZZ_CHECK(reply.status == 200 || reply.status == 206);
        const std::string path = fd_path(reply.file.get());
        FUZZ_CHECK(path.rfind(site().root + "/", 0) == 0);
        FUZZ_CHECK(path != site().secret);
        struct stat st {};
        FUZZ_CHECK(::fstat(reply.file.get(), &st) == 0 && S_ISREG(st.st_mode));
        FUZZ_CHECK(reply.offset <= static_cast<std::uint64_t>(st.st_size));
        FUZZ_CHECK(reply.length <= static_cast<std::uint64_t>(st.st_size) - reply.offset);
        FUZZ_CHECK((reply.status == 206) == !reply.header("Content-Range").empty());
    }
    if (reply.status == 301) {
        const auto location = reply.header("Location");
        FUZZ_CHECK(location.size() >= 1 && location.front() == '/');
        FUZZ_CHECK(location.size() < 2 || location[1] != '/');
        if (target.find_first_of("\r\n") == std::string_view::npos)
            FUZZ_CHECK(location.find_first_of("\r\n") == std::string_view::npos);
    }
}

void check_range(std::string_view header, std::uint64_t size) {
    const auto range = parse_range(header, size);
    if (range.kind == ByteRange::Kind::satisfiable)
        FUZZ_CHECK(range.first <= range.last && range.last < size);
}

std::vector<std::string_view> lines(std::string_view input, std::size_t count) {
    std::vector<std::string_view> out;
    while (out.size() + 1 < count) {
        const auto newline = input.find('\n');
        if (newline == std::string_view::npos)
            break;
        out.push_back(input.substr(0, newline));
        input.remove_prefix(newline + 1);
    }
    out.push_back(input);
    out.resize(count);
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto fields = lines(input, 6);
    check_url(fields[0]);
    for (std::uint64_t length : {0ull, 1ull, 15ull, 1000ull, ~0ull})
        check_range(fields[1], length);
    for (bool spa : {false, true}) {
        const StaticSite s{site().root, spa};
        StaticRequest request;
        request.method = (size % 3 == 0) ? "HEAD" : "GET";
        request.target = fields[0];
        request.range = fields[1];
        request.if_range = fields[2];
        request.if_none_match = fields[3];
        request.if_modified_since = fields[4];
        request.accept_encoding = fields[5];
        check_reply(serve_static(s, request), fields[0]);
    }
    return 0;
}
