// cli/credentials: the token for an agent from the credentials file, which
// must be private; its line for an agent wins over DEPLOYCTL_TOKEN; what a
// refused token's message says to do.
#include <cli/credentials.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <sys/stat.h>

#include "scoped_env.hpp"
#include "temp_dir.hpp"

TEST_CASE("the credentials file gives the token of the agent's URL") {
    test::TempDir dir;
    const auto path = dir.path() / "credentials";
    REQUIRE(common::atomic_write_file(path,
                                      "# agents\n"
                                      "http://127.0.0.1:7070  dpa_aaa\n"
                                      "\n"
                                      "https://web2:7443/ dpa_bbb\n",
                                      0600));
    CHECK(*cli::read_credentials(path, "http://127.0.0.1:7070") == "dpa_aaa");
    CHECK(*cli::read_credentials(path, "https://web2:7443") == "dpa_bbb");
    CHECK(cli::read_credentials(path, "http://127.0.0.1:7071")->empty());
    CHECK(cli::read_credentials(dir.path() / "missing", "http://127.0.0.1:7070")->empty());

    SUBCASE("refused when group or others may read it") {
        for (unsigned mode : {0644u, 0640u, 0604u}) {
            CAPTURE(mode);
            REQUIRE(::chmod(path.c_str(), mode) == 0);
            auto token = cli::read_credentials(path, "http://127.0.0.1:7070");
            REQUIRE_FALSE(token);
            CHECK(token.error().kind == common::ErrorKind::auth);
            CHECK(token.error().message.find("chmod 600") != std::string::npos);
        }
    }
    SUBCASE("a malformed line is a config error naming the line") {
        REQUIRE(common::atomic_write_file(path, "http://127.0.0.1:7070\n", 0600));
        auto token = cli::read_credentials(path, "http://127.0.0.1:7070");
        REQUIRE_FALSE(token);
        CHECK(token.error().kind == common::ErrorKind::config);
        CHECK(token.error().message.find(":1:") != std::string::npos);
    }
}

namespace {

using test::ScopedEnv;

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("an agent's line in the credentials file wins over DEPLOYCTL_TOKEN") {
    test::TempDir dir;
    ScopedEnv xdg("XDG_CONFIG_HOME", dir.path().c_str());
    std::filesystem::create_directories(dir.path() / "deployctl");
    REQUIRE(common::atomic_write_file(dir.path() / "deployctl" / "credentials",
                                      "https://h2:7443 dpa_line\n", 0600));
    SUBCASE("with the variable set") {
        ScopedEnv token("DEPLOYCTL_TOKEN", "dpa_env");
        auto h2 = cli::token_for("https://h2:7443");
        REQUIRE(h2);
        CHECK(h2->value == "dpa_line");
        CHECK(h2->source == cli::TokenSource::file);
        auto h1 = cli::token_for("https://h1:7443");
        REQUIRE(h1);
        CHECK(h1->value == "dpa_env");
        CHECK(h1->source == cli::TokenSource::environment);
    }
    SUBCASE("without it") {
        ScopedEnv token("DEPLOYCTL_TOKEN", nullptr);
        CHECK(cli::token_for("https://h2:7443")->source == cli::TokenSource::file);
        auto h1 = cli::token_for("https://h1:7443");
        REQUIRE(h1);
        CHECK(h1->value.empty());
        CHECK(h1->source == cli::TokenSource::none);
    }
}

TEST_CASE("a refused token's message names the host and a fix for where the token came from") {
    test::TempDir dir;
    ScopedEnv xdg("XDG_CONFIG_HOME", dir.path().c_str());
    const std::string file = (dir.path() / "deployctl" / "credentials").string();
    const std::string url = "https://h2:7443";
    SUBCASE("from DEPLOYCTL_TOKEN: a line for the host, or the variable") {
        auto m = cli::auth_error_message(401, "unknown token", url, cli::TokenSource::environment);
        CHECK(has(m, "https://h2:7443 refused the token from DEPLOYCTL_TOKEN (HTTP 401)"));
        CHECK(has(m, "unknown token"));
        CHECK(has(m, "add a line for it to " + file + " with `deployctl login https://h2:7443`"));
        CHECK(has(m, "or set DEPLOYCTL_TOKEN to that agent's token"));
        auto forbidden =
            cli::auth_error_message(403, "needs deploy scope", url, cli::TokenSource::environment);
        CHECK(has(forbidden, "(HTTP 403)"));
        CHECK(has(forbidden, "scope and app"));
        CHECK(has(forbidden, "`deployctl login https://h2:7443`"));
    }
    SUBCASE("from the file: that line, which DEPLOYCTL_TOKEN would not override") {
        auto m = cli::auth_error_message(401, "revoked", url, cli::TokenSource::file);
        CHECK(has(m, "https://h2:7443 refused the token for it in " + file + " (HTTP 401)"));
        CHECK(has(m, "replace that line's token with that agent's token, `deployctl login "
                     "https://h2:7443`"));
        CHECK(has(m, "the line wins over it"));
        CHECK_FALSE(has(m, "set DEPLOYCTL_TOKEN"));
        auto forbidden =
            cli::auth_error_message(403, "needs admin scope", url, cli::TokenSource::file);
        CHECK(has(forbidden, "replace that line's token with it"));
        CHECK_FALSE(has(forbidden, "set DEPLOYCTL_TOKEN"));
    }
    SUBCASE("no token: the variable, a line, or a local agent's admin.token") {
        auto m = cli::auth_error_message(401, "a token is required", url, cli::TokenSource::none);
        CHECK(has(m, "https://h2:7443 needs a token and deployctl has none for it (HTTP 401)"));
        CHECK(has(m, "set DEPLOYCTL_TOKEN"));
        CHECK(has(m, "add a line for it to " + file + " with `deployctl login https://h2:7443`"));
        CHECK(has(m, "admin.token"));
    }
}

TEST_CASE("store_credentials adds or replaces the agent's line, mode 0600, folder 0700") {
    test::TempDir dir;
    const auto path = dir.path() / "deployctl" / "credentials";
    auto added = cli::store_credentials(path, "https://h2:7443/", "dpa_one");
    REQUIRE(added);
    CHECK_FALSE(*added);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    REQUIRE(::stat(path.parent_path().c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0700);
    REQUIRE(cli::store_credentials(path, "http://127.0.0.1:7070", "dpa_local"));
    auto replaced = cli::store_credentials(path, "https://h2:7443", "dpa_two");
    REQUIRE(replaced);
    CHECK(*replaced);
    CHECK(*cli::read_credentials(path, "https://h2:7443") == "dpa_two");
    CHECK(*cli::read_credentials(path, "http://127.0.0.1:7070") == "dpa_local");
    CHECK(*common::read_file(path) == "http://127.0.0.1:7070 dpa_local\nhttps://h2:7443 dpa_two\n");

    SUBCASE("a file others may read is refused, and left as it is") {
        REQUIRE(::chmod(path.c_str(), 0644) == 0);
        auto refused = cli::store_credentials(path, "https://h2:7443", "dpa_three");
        REQUIRE_FALSE(refused);
        CHECK(refused.error().message.find("chmod 600") != std::string::npos);
        REQUIRE(::chmod(path.c_str(), 0600) == 0);
        CHECK(*cli::read_credentials(path, "https://h2:7443") == "dpa_two");
    }
}

TEST_CASE("a credentials line may pin an https:// agent's certificate") {
    test::TempDir dir;
    const auto path = dir.path() / "credentials";
    const std::string pin =
        "sha256:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:"
        "EF:01:23:45:67:89";
    REQUIRE(cli::store_credentials(path, "https://web1:7443", "dpa_one", pin));
    REQUIRE(cli::store_credentials(path, "http://127.0.0.1:7070", "dpa_two"));
    auto line = cli::read_credential(path, "https://web1:7443");
    REQUIRE(line);
    CHECK(line->token == "dpa_one");
    CHECK(line->fingerprint == pin);
    CHECK(*cli::read_credentials(path, "https://web1:7443") == "dpa_one");
    CHECK(cli::read_credential(path, "http://127.0.0.1:7070")->fingerprint.empty());

    SUBCASE("written as openssl prints it, read back canonical") {
        REQUIRE(common::atomic_write_file(path,
                                          "https://web1:7443 dpa_one sha256 "
                                          "Fingerprint=ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:"
                                          "67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89\n",
                                          0600));
        // "sha256 Fingerprint=..." is two words: a line of four fields is malformed.
        CHECK_FALSE(cli::read_credential(path, "https://web1:7443"));
        REQUIRE(common::atomic_write_file(
            path,
            "https://web1:7443 dpa_one "
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n",
            0600));
        CHECK(cli::read_credential(path, "https://web1:7443")->fingerprint == pin);
    }
    SUBCASE("a third field that is not a fingerprint is a config error naming the line") {
        REQUIRE(common::atomic_write_file(path, "https://web1:7443 dpa_one not-a-pin\n", 0600));
        auto bad = cli::read_credential(path, "https://web1:7443");
        REQUIRE_FALSE(bad);
        CHECK(bad.error().kind == common::ErrorKind::config);
        CHECK(bad.error().message.find(":1:") != std::string::npos);
    }
}
