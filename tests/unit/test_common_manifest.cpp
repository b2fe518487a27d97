#include <common/hash.hpp>
#include <common/manifest.hpp>
#include <common/storable_path.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

namespace {
const std::string k_digest = common::sha256_hex("x");

common::ManifestEntry file_entry(std::string path) {
    return {std::move(path), common::EntryKind::file, k_digest, 1, {}};
}
common::ManifestEntry symlink_entry(std::string path, std::string target) {
    return {std::move(path), common::EntryKind::symlink, {}, 0, std::move(target)};
}
common::Status validate(std::vector<common::ManifestEntry> entries) {
    return common::validate_manifest(common::Manifest{std::move(entries)});
}
} // namespace

TEST_CASE("is_safe_relative_path") {
    CHECK(common::is_safe_relative_path("a"));
    CHECK(common::is_safe_relative_path("a/b.c/d"));
    CHECK(common::is_safe_relative_path("..hidden"));
    CHECK_FALSE(common::is_safe_relative_path(""));
    CHECK_FALSE(common::is_safe_relative_path("/etc/passwd"));
    CHECK_FALSE(common::is_safe_relative_path("../evil"));
    CHECK_FALSE(common::is_safe_relative_path("a/../../b"));
    CHECK_FALSE(common::is_safe_relative_path("a//b"));
    CHECK_FALSE(common::is_safe_relative_path("a/./b"));
    CHECK_FALSE(common::is_safe_relative_path("a/"));
    CHECK_FALSE(common::is_safe_relative_path("a\\..\\b"));
    CHECK_FALSE(common::is_safe_relative_path(std::string("a\0b", 3)));
}

TEST_CASE("Manifest::blob_digests: each content once, sorted, symlinks left out") {
    const auto x = common::sha256_hex("x"), y = common::sha256_hex("y");
    common::Manifest m{{{"b", common::EntryKind::file, y, 1, {}},
                        {"a", common::EntryKind::file, x, 1, {}},
                        {"c", common::EntryKind::executable, y, 1, {}},
                        symlink_entry("l", "a")}};
    CHECK(m.blob_digests() ==
          std::vector<std::string>(x < y ? std::vector{x, y} : std::vector{y, x}));
    CHECK(common::Manifest{}.blob_digests().empty());
}

TEST_CASE("validate_manifest accepts a symlink to a symlink as its last step") {
    CHECK(validate({file_entry("a"), symlink_entry("l1", "a"), symlink_entry("l2", "l1")}).ok());
}

TEST_CASE("validate_manifest accepts a normal tree") {
    CHECK(
        validate({file_entry("index.html"), file_entry("src/app.js"),
                  symlink_entry("current", "src/app.js"), symlink_entry("src/up", "../index.html")})
            .ok());
}

TEST_CASE("validate_manifest refuses hostile entries") {
    SUBCASE("path traversal") {
        CHECK_FALSE(validate({file_entry("../evil")}).ok());
    }
    SUBCASE("absolute path") {
        CHECK_FALSE(validate({file_entry("/etc/passwd")}).ok());
    }
    SUBCASE("symlink out of the tree") {
        auto s = validate({symlink_entry("link", "../../outside")});
        REQUIRE_FALSE(s.ok());
        CHECK(s.error().kind == common::ErrorKind::bad_request);
        CHECK(s.error().message.find("leads out of the source tree") != std::string::npos);
    }
    SUBCASE("symlink climbing out from a subdirectory") {
        CHECK_FALSE(validate({symlink_entry("a/b/link", "../../../x")}).ok());
    }
    SUBCASE("absolute symlink") {
        CHECK_FALSE(validate({symlink_entry("link", "/etc/passwd")}).ok());
    }
    SUBCASE("path through a symlink") {
        auto s = validate({symlink_entry("link", "dir"), file_entry("link/x")});
        REQUIRE_FALSE(s.ok());
        CHECK(s.error().message.find("goes through the symlink \"link\"") != std::string::npos);
    }
    SUBCASE("symlink chain climbing through another symlink") {
        auto s = validate(
            {symlink_entry("l1", "."), symlink_entry("l2", "l1/.."), file_entry("VERSION")});
        REQUIRE_FALSE(s.ok());
        CHECK(s.error().message.find("goes through the symlink \"l1\"") != std::string::npos);
        CHECK_FALSE(validate({symlink_entry("d/l1", ".."), symlink_entry("l2", "d/l1/x")}).ok());
    }
    SUBCASE("path through a file") {
        CHECK_FALSE(validate({file_entry("a"), file_entry("a/b")}).ok());
    }
    SUBCASE("path through a file, after entries that share its folders") {
        // The folders of the entry before are not looked up again: each case below has a
        // neighbour whose folders are checked and a prefix of this one's, or almost.
        CHECK_FALSE(
            validate({file_entry("d/e/f"), file_entry("d/e/g"), file_entry("d/e/g/h")}).ok());
        CHECK_FALSE(validate({file_entry("d/e/f"), file_entry("d/ex"), file_entry("d/ex/y")}).ok());
        CHECK_FALSE(validate({file_entry("d/ex/f"), file_entry("d/e"), file_entry("d/e/y")}).ok());
        CHECK_FALSE(
            validate({file_entry("d/e/f/g"), symlink_entry("d/e/l", "f"), file_entry("d/e/l/x")})
                .ok());
        CHECK_FALSE(validate({file_entry("d/e/l/x"), symlink_entry("d/e/l", "f")}).ok());
        CHECK_FALSE(validate({file_entry("x/y/z"), file_entry("x/y/z/w/v")}).ok());
        CHECK_FALSE(validate({file_entry("d/e"), file_entry("d/ex/f"), file_entry("d/e/y")}).ok());
        CHECK(validate({file_entry("d/e/f"), file_entry("d/e/g"), file_entry("d/ex/y"),
                        file_entry("d/e.txt"), file_entry("d/e/h/i")})
                  .ok());
    }
    SUBCASE("duplicate path") {
        CHECK_FALSE(validate({file_entry("a"), file_entry("a")}).ok());
    }
    SUBCASE("bad digest") {
        auto e = file_entry("a");
        e.digest = "../../etc/passwd";
        CHECK_FALSE(validate({e}).ok());
    }
}

TEST_CASE("manifest JSON round trip and digest") {
    common::Manifest m{{file_entry("a"),
                        {"bin/run", common::EntryKind::executable, k_digest, 1, {}},
                        symlink_entry("l", "a")}};
    auto back = common::manifest_from_json(common::manifest_to_json(m));
    REQUIRE(back.ok());
    REQUIRE(back->entries.size() == 3);
    CHECK(back->entries[1].kind == common::EntryKind::executable);
    CHECK(back->entries[2].target == "a");
    CHECK(back->digest() == m.digest());
    CHECK(m.total_bytes() == 2);

    // The digest's bytes, which releases recorded by earlier agents were compared by: each
    // entry by path, its fields NUL-separated and its size on a line.
    using namespace std::string_literals;
    CHECK(m.digest() == common::sha256_hex("a\0file\0"s + k_digest +
                                           "\0"
                                           "1\n"
                                           "bin/run\0exec\0"s +
                                           k_digest +
                                           "\0"
                                           "1\n"
                                           "l\0symlink\0a\0"
                                           "0\n"s));
    common::Manifest reordered{{m.entries[2], m.entries[0], m.entries[1]}};
    CHECK(reordered.digest() == m.digest());
    reordered.entries[1].digest = common::sha256_hex("y");
    CHECK(reordered.digest() != m.digest());
}

TEST_CASE("manifest_from_json refuses malformed input") {
    using nlohmann::json;
    CHECK_FALSE(common::manifest_from_json(json::array()).ok());
    CHECK_FALSE(common::manifest_from_json(json{{"files", 3}}).ok());
    CHECK_FALSE(common::manifest_from_json(json{{"files", {{{"mode", "file"}}}}}).ok());
    CHECK_FALSE(
        common::manifest_from_json(json{{"files", {{{"path", "a"}, {"mode", "device"}}}}}).ok());
    CHECK_FALSE(common::manifest_from_json(
                    json{{"files", {{{"path", "a"}, {"size", -1}, {"digest", k_digest}}}}})
                    .ok());
}

TEST_CASE("manifest_from_json refuses a mode that is not a string instead of throwing") {
    // Found by fuzz/manifest: {"mode": 1} threw json::type_error (a 500 from the agent).
    using nlohmann::json;
    for (const json& mode : {json(1), json(nullptr), json::array({"file"}), json{{"m", "exec"}}}) {
        CAPTURE(mode.dump());
        common::Result<common::Manifest> parsed =
            common::make_error(common::ErrorKind::internal, "");
        CHECK_NOTHROW(parsed = common::manifest_from_json(json{
                          {"files", {{{"path", "a"}, {"mode", mode}, {"digest", k_digest}}}}}));
        REQUIRE_FALSE(parsed.ok());
        CHECK(parsed.error().kind == common::ErrorKind::bad_request);
        CHECK(parsed.error().message.find("\"mode\"") != std::string::npos);
    }
}

TEST_CASE("validate_manifest refuses a path the store cannot keep, escaped, as bad_path") {
    struct Case {
        std::string path;
        std::string shown; // how the message prints it
        std::string what;
    };
    for (const Case& c : {
             Case{"a\nb", "a\\nb", "a newline (U+000A)"},
             Case{"dir/a\tb", "dir/a\\tb", "a tab (U+0009)"},
             Case{"x\x7f", "x\\x7f", "a delete character (U+007F)"},
             Case{"\x1b[2Jclear", "\\x1b[2Jclear", "an escape character (U+001B)"},
             Case{"nel\xc2\x85.txt", "nel\\u0085.txt", "a control character (U+0085)"},
             Case{"bad\xff", "bad\\xff", "bytes that are not valid UTF-8"},
             Case{"over\xc0\xaf", "over\\xc0\\xaf", "bytes that are not valid UTF-8"},
             Case{"lone\x80", "lone\\x80", "bytes that are not valid UTF-8"},
             Case{std::string("nul\0", 4), "nul\\x00", "a NUL byte (U+0000)"},
         }) {
        CAPTURE(c.shown);
        auto fault = common::ManifestFault::malformed;
        auto s = common::validate_manifest(common::Manifest{{file_entry("ok"), file_entry(c.path)}},
                                           &fault);
        REQUIRE_FALSE(s.ok());
        CHECK(s.error().kind == common::ErrorKind::bad_request);
        CHECK(fault == common::ManifestFault::unstorable_path);
        const auto& message = s.error().message;
        CHECK(message.find("\"" + c.shown + "\"") != std::string::npos);
        CHECK(message.find(c.what) != std::string::npos);
        CHECK(message.find("rename the file") != std::string::npos);
        // The message itself holds no control character and is valid UTF-8.
        CHECK(common::is_storable_path(message));
    }
}

TEST_CASE("validate_manifest refuses a symlink target the store cannot keep") {
    auto fault = common::ManifestFault::malformed;
    auto s = common::validate_manifest(
        common::Manifest{{file_entry("a\xc3\xa9"), symlink_entry("l", "a\xc3\xa9\n")}}, &fault);
    REQUIRE_FALSE(s.ok());
    CHECK(fault == common::ManifestFault::unstorable_path);
    CHECK(s.error().message.find("\"a\xc3\xa9\\n\"") != std::string::npos);
}

TEST_CASE("validate_manifest accepts non-ASCII names; other faults are not bad_path") {
    CHECK(validate({file_entry("caf\xc3\xa9.html"), file_entry("\xe6\x97\xa5\xe6\x9c\xac/index.md"),
                    symlink_entry("\xe6\x97\xa5", "\xe6\x97\xa5\xe6\x9c\xac/index.md")})
              .ok());
    auto fault = common::ManifestFault::unstorable_path;
    CHECK_FALSE(common::validate_manifest(common::Manifest{{file_entry("../x")}}, &fault).ok());
    CHECK(fault == common::ManifestFault::malformed);
}

TEST_CASE("manifest_from_json tells a declared size from an absent one") {
    auto parsed = common::manifest_from_json(nlohmann::json::parse(
        R"({"files": [{"path": "a", "digest": ")" + k_digest + R"(", "size": 0},
                      {"path": "b", "digest": ")" +
        k_digest + R"("}]})"));
    REQUIRE(parsed.ok());
    CHECK(parsed->entries[0].size_declared);
    CHECK_FALSE(parsed->entries[1].size_declared);
    CHECK(parsed->entries[1].size == 0);
}

TEST_CASE("manifest_from_json messages print a hostile path escaped") {
    using nlohmann::json;
    auto parsed = common::manifest_from_json(
        json{{"files", {{{"path", "a\nb"}, {"mode", "device\x1b"}, {"digest", k_digest}}}}});
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().message.find("\"a\\nb\"") != std::string::npos);
    CHECK(parsed.error().message.find("\"device\\x1b\"") != std::string::npos);
}
