// cli/credentials: the token for an agent from the credentials file, which
// must be private.
#include "temp_dir.hpp"

#include <cli/credentials.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <sys/stat.h>

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
