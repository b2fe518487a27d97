// deploy-proxy static sites (agent/proxy/static_files.hpp): request paths,
// content types, validators, ranges and answering from a directory.
#include <agent/proxy/static_files.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include "temp_dir.hpp"

using namespace agent::proxy;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> segments(std::string_view target) {
    auto path = parse_url_path(target);
    REQUIRE(path.has_value());
    return path->segments;
}

// A site: index.html, app.js (+ app.js.gz), docs/index.html, empty/ and a
// symlink to a secret file outside the root.
class Site {
  public:
    Site() {
        fs::create_directories(root() / "docs");
        fs::create_directories(root() / "empty");
        write("index.html", "<h1>home</h1>\n");
        write("app.js", "console.log('0123456789');\n");
        write("app.js.gz", "GZIPPED");
        write("docs/index.html", "<h1>docs</h1>\n");
        REQUIRE(common::atomic_write_file(m_dir.path() / "secret", "TOP SECRET\n").ok());
        fs::create_symlink(m_dir.path() / "secret", root() / "leak.txt");
        fs::create_symlink(m_dir.path(), root() / "up");
        fs::create_symlink("docs/index.html", root() / "alias.html");
    }
    fs::path root() const { return m_dir.path() / "dist"; }
    void write(const std::string& path, const std::string& text) {
        REQUIRE(common::atomic_write_file(root() / path, text).ok());
    }
    StaticReply get(std::string_view target, StaticRequest request = {}, bool spa = false) const {
        const std::string root_text = root().string();
        if (request.method.empty())
            request.method = "GET";
        request.target = target;
        return serve_static({root_text, spa}, request);
    }

  private:
    test::TempDir m_dir;
};

std::string body_of(StaticReply& reply) {
    if (!reply.file)
        return reply.body;
    std::string text(reply.length, '\0');
    auto n = ::pread(reply.file.get(), text.data(), text.size(), static_cast<off_t>(reply.offset));
    REQUIRE(n == static_cast<ssize_t>(reply.length));
    return text;
}

} // namespace

TEST_CASE("parse_url_path decodes and splits request paths") {
    CHECK(segments("/").empty());
    CHECK(segments("/a/b.js?x=1#frag") == std::vector<std::string>{"a", "b.js"});
    CHECK(segments("/a%20b/%41") == std::vector<std::string>{"a b", "A"});
    CHECK(segments("//a/./b//") == std::vector<std::string>{"a", "b"});
    CHECK(segments("http://host.example/a/b") == std::vector<std::string>{"a", "b"});
    CHECK(parse_url_path("/docs/")->trailing_slash);
    CHECK_FALSE(parse_url_path("/docs")->trailing_slash);
    CHECK_FALSE(parse_url_path("/")->trailing_slash);
    SUBCASE("paths that could escape or confuse are refused") {
        for (std::string_view bad : {"/../etc/passwd", "/a/../../b", "/%2e%2e/etc/passwd",
                                     "/%2E%2E", "/a%2Fb", "/a%2f..%2fb", "/a%00b", "/a\\b",
                                     "/a%5Cb", "/%", "/%4", "/%zz", "*", "", "a/b", "/a%0Ab"}) {
            CAPTURE(bad);
            CHECK_FALSE(parse_url_path(bad).has_value());
        }
    }
    SUBCASE("url_path_string encodes what needs it") {
        CHECK(url_path_string(*parse_url_path("/a%20b/c")) == "/a%20b/c");
        CHECK(url_path_string(*parse_url_path("/")) == "/");
        CHECK(url_path_string(*parse_url_path("//evil.example/x")) == "/evil.example/x");
    }
}

TEST_CASE("content_type by extension") {
    CHECK(content_type("index.html") == "text/html; charset=utf-8");
    CHECK(content_type("/srv/a.b/style.CSS") == "text/css; charset=utf-8");
    CHECK(content_type("app.js") == "text/javascript; charset=utf-8");
    CHECK(content_type("mod.mjs") == "text/javascript; charset=utf-8");
    CHECK(content_type("data.json") == "application/json");
    CHECK(content_type("logo.svg") == "image/svg+xml");
    CHECK(content_type("a.png") == "image/png");
    CHECK(content_type("a.jpeg") == "image/jpeg");
    CHECK(content_type("a.wasm") == "application/wasm");
    CHECK(content_type("font.woff2") == "font/woff2");
    CHECK(content_type("app.js.map") == "application/json");
    CHECK(content_type("README") == "application/octet-stream");
    CHECK(content_type("/srv/a.b/README") == "application/octet-stream");
    CHECK(content_type("archive.tar.zst") == "application/octet-stream");
    CHECK(has_extension("app.js"));
    CHECK_FALSE(has_extension("about"));
    CHECK_FALSE(has_extension(".hidden"));
    CHECK_FALSE(has_extension("trailing."));
}

TEST_CASE("ETag and If-None-Match") {
    CHECK(make_etag(255, 0x10) == "\"ff-10\"");
    const std::string etag = make_etag(1234, 1700000000123456789);
    CHECK(etag_matches(etag, etag));
    CHECK(etag_matches("W/" + etag, etag));
    CHECK(etag_matches("\"other\", " + etag, etag));
    CHECK(etag_matches("*", etag));
    CHECK_FALSE(etag_matches("\"other\"", etag));
    CHECK_FALSE(etag_matches("", etag));
    CHECK_FALSE(etag_matches("garbage", etag));
}

TEST_CASE("HTTP dates") {
    CHECK(http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") ==
          std::optional<std::time_t>(784111777));
    CHECK_FALSE(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT").has_value());
    CHECK_FALSE(parse_http_date("Sun, 06 Xyz 1994 08:49:37 GMT").has_value());
    CHECK_FALSE(parse_http_date("").has_value());
}

TEST_CASE("accepts_gzip reads Accept-Encoding") {
    CHECK(accepts_gzip("gzip"));
    CHECK(accepts_gzip("br, gzip;q=0.5, deflate"));
    CHECK(accepts_gzip("*"));
    CHECK(accepts_gzip("X-GZIP"));
    CHECK_FALSE(accepts_gzip(""));
    CHECK_FALSE(accepts_gzip("br, deflate"));
    CHECK_FALSE(accepts_gzip("gzip;q=0"));
    CHECK_FALSE(accepts_gzip("*, gzip;q=0.000"));
}

TEST_CASE("parse_range") {
    using Kind = ByteRange::Kind;
    auto check = [](std::string_view header, std::uint64_t size, Kind kind, std::uint64_t first = 0,
                    std::uint64_t last = 0) {
        CAPTURE(header);
        auto range = parse_range(header, size);
        CHECK(range.kind == kind);
        if (kind == Kind::satisfiable) {
            CHECK(range.first == first);
            CHECK(range.last == last);
        }
    };
    check("bytes=0-9", 100, Kind::satisfiable, 0, 9);
    check("bytes=10-", 100, Kind::satisfiable, 10, 99);
    check("bytes=90-200", 100, Kind::satisfiable, 90, 99);
    check("bytes=-10", 100, Kind::satisfiable, 90, 99);
    check("bytes=-500", 100, Kind::satisfiable, 0, 99);
    check("bytes=99-99", 100, Kind::satisfiable, 99, 99);
    check("bytes=0-99999999999999999999999", 100, Kind::satisfiable, 0, 99);
    check("bytes=100-", 100, Kind::unsatisfiable);
    check("bytes=200-300", 100, Kind::unsatisfiable);
    check("bytes=-0", 100, Kind::unsatisfiable);
    check("bytes=0-", 0, Kind::unsatisfiable);
    check("bytes=5-1", 100, Kind::none);
    check("bytes=0-1,5-6", 100, Kind::none);
    check("items=0-1", 100, Kind::none);
    check("bytes=a-b", 100, Kind::none);
    check("bytes=-", 100, Kind::none);
    check("bytes=1", 100, Kind::none);
    check("", 100, Kind::none);
}

TEST_CASE("serve_static answers files with type, validators and ranges") {
    Site site;
    auto reply = site.get("/app.js");
    CHECK(reply.status == 200);
    CHECK(reply.header("Content-Type") == "text/javascript; charset=utf-8");
    CHECK(reply.header("Accept-Ranges") == "bytes");
    CHECK(reply.header("Vary") == "Accept-Encoding"); // a .gz variant exists
    CHECK(reply.header("Content-Encoding").empty());
    CHECK(body_of(reply) == "console.log('0123456789');\n");
    const std::string etag(reply.header("ETag"));
    const std::string modified(reply.header("Last-Modified"));
    CHECK(etag.front() == '"');
    CHECK(modified.size() == 29);

    SUBCASE("If-None-Match → 304 with the validators, no body") {
        StaticRequest conditional;
        conditional.if_none_match = etag;
        auto again = site.get("/app.js", conditional);
        CHECK(again.status == 304);
        CHECK_FALSE(again.file);
        CHECK(again.header("ETag") == etag);
    }
    SUBCASE("If-Modified-Since → 304; an older date → 200") {
        StaticRequest conditional;
        conditional.if_modified_since = modified;
        CHECK(site.get("/app.js", conditional).status == 304);
        conditional.if_modified_since = "Sun, 06 Nov 1994 08:49:37 GMT";
        CHECK(site.get("/app.js", conditional).status == 200);
    }
    SUBCASE("Range → 206 with Content-Range") {
        StaticRequest ranged;
        ranged.range = "bytes=13-22";
        auto part = site.get("/app.js", ranged);
        CHECK(part.status == 206);
        CHECK(part.header("Content-Range") == "bytes 13-22/27");
        CHECK(body_of(part) == "0123456789");
        ranged.if_range = "\"stale\"";
        CHECK(site.get("/app.js", ranged).status == 200);
        ranged.if_range = etag;
        CHECK(site.get("/app.js", ranged).status == 206);
    }
    SUBCASE("an unsatisfiable Range → 416") {
        StaticRequest ranged;
        ranged.range = "bytes=1000-";
        auto refused = site.get("/app.js", ranged);
        CHECK(refused.status == 416);
        CHECK(refused.header("Content-Range") == "bytes */27");
        CHECK_FALSE(refused.file);
    }
    SUBCASE("gzip variant when accepted") {
        StaticRequest gzip;
        gzip.accept_encoding = "gzip, br";
        auto packed = site.get("/app.js", gzip);
        CHECK(packed.status == 200);
        CHECK(packed.header("Content-Encoding") == "gzip");
        CHECK(packed.header("Content-Type") == "text/javascript; charset=utf-8");
        CHECK(packed.header("Vary") == "Accept-Encoding");
        CHECK(packed.header("ETag") != etag);
        CHECK(body_of(packed) == "GZIPPED");
    }
    SUBCASE("no Vary without a variant") {
        CHECK(site.get("/index.html").header("Vary").empty());
    }
}

TEST_CASE("serve_static: index files, redirects and the SPA fallback") {
    Site site;
    auto home = site.get("/");
    CHECK(home.status == 200);
    CHECK(home.header("Content-Type") == "text/html; charset=utf-8");
    CHECK(body_of(home) == "<h1>home</h1>\n");
    auto docs = site.get("/docs/");
    CHECK(docs.status == 200);
    CHECK(body_of(docs) == "<h1>docs</h1>\n");
    auto moved = site.get("/docs?page=2");
    CHECK(moved.status == 301);
    CHECK(moved.header("Location") == "/docs/?page=2");
    CHECK(site.get("/empty/").status == 404); // a directory without index.html
    CHECK(site.get("/app.js/").status == 404);
    CHECK(site.get("/alias.html").status == 200); // a symlink inside the root is fine

    SUBCASE("without spa, unknown paths are 404") {
        CHECK(site.get("/settings/profile").status == 404);
    }
    SUBCASE("with spa, extension-less unknown paths get /index.html with 200") {
        auto app = site.get("/settings/profile", {}, true);
        CHECK(app.status == 200);
        CHECK(body_of(app) == "<h1>home</h1>\n");
        CHECK(site.get("/missing.js", {}, true).status == 404);
    }
}

TEST_CASE("serve_static never leaves the root") {
    Site site;
    for (std::string_view target :
         {"/../secret", "/%2e%2e/secret", "/docs/..%2Fsecret", "/a%00b", "/..\\secret"}) {
        CAPTURE(target);
        auto reply = site.get(target);
        CHECK(reply.status == 400);
        CHECK(body_of(reply).find("SECRET") == std::string::npos);
    }
    for (std::string_view target : {"/leak.txt", "/up/secret"}) {
        CAPTURE(target);
        auto reply = site.get(target);
        CHECK(reply.status == 404);
        CHECK(body_of(reply).find("SECRET") == std::string::npos);
        auto spa = site.get(target, {}, true); // "secret" has no extension: the app's index
        CHECK(body_of(spa).find("SECRET") == std::string::npos);
    }
    SUBCASE("a FIFO is not a file") {
        REQUIRE(::mkfifo((site.root() / "pipe").c_str(), 0600) == 0);
        CHECK(site.get("/pipe").status == 404);
    }
    SUBCASE("a missing root is a 404") {
        StaticRequest request;
        request.method = "GET";
        request.target = "/";
        CHECK(serve_static({"/nonexistent/deployctl/root", false}, request).status == 404);
    }
}

TEST_CASE("serve_static answers GET and HEAD only") {
    Site site;
    StaticRequest post;
    post.method = "POST";
    auto refused = site.get("/index.html", post);
    CHECK(refused.status == 405);
    CHECK(refused.header("Allow") == "GET, HEAD");
    StaticRequest head;
    head.method = "HEAD";
    auto headed = site.get("/index.html", head);
    CHECK(headed.status == 200);
    CHECK(headed.length == 14);
}
