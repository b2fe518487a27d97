// agent/secrets: envelope encryption of secrets, the env store, redaction.
#include <agent/secrets/env_vars.hpp>
#include <agent/secrets/envelope.hpp>
#include <agent/secrets/redact.hpp>
#include <common/env_name.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <sys/stat.h>

#include "temp_dir.hpp"

namespace secrets = agent::secrets;
using common::ErrorKind;

namespace {

std::string flip_hex(std::string hex, std::size_t at) {
    hex[at] = hex[at] == '0' ? '1' : '0';
    return hex;
}

std::unique_ptr<agent::Store> open_store(const test::TempDir& dir) {
    auto store = agent::Store::open(dir.path() / "state.db");
    REQUIRE(store.ok());
    return std::move(*store);
}

} // namespace

TEST_CASE("envelope: seal and open round trip") {
    auto key = secrets::Key::random();
    const std::string plain = "postgres://user:s3cret@db/app\nwith a second line";
    auto sealed = secrets::seal(key, plain, secrets::secret_aad("web", "DATABASE_URL"));
    REQUIRE(sealed.ok());
    CHECK(sealed->find("s3cret") == std::string::npos);
    CHECK(sealed->size() == 2 * (12 + plain.size() + 16));
    auto opened = secrets::open(key, *sealed, secrets::secret_aad("web", "DATABASE_URL"));
    REQUIRE(opened.ok());
    CHECK(*opened == plain);
    SUBCASE("a fresh nonce each time") {
        auto again = secrets::seal(key, plain, secrets::secret_aad("web", "DATABASE_URL"));
        REQUIRE(again.ok());
        CHECK(*again != *sealed);
    }
    SUBCASE("an empty value") {
        auto empty = secrets::seal(key, "", "aad");
        REQUIRE(empty.ok());
        auto back = secrets::open(key, *empty, "aad");
        REQUIRE(back.ok());
        CHECK(back->empty());
    }
}

TEST_CASE("envelope: tampering with nonce, ciphertext, tag or AAD fails") {
    auto key = secrets::Key::random();
    auto aad = secrets::secret_aad("web", "API_KEY");
    auto sealed = secrets::seal(key, "a long secret value", aad);
    REQUIRE(sealed.ok());
    SUBCASE("nonce") {
        CHECK_FALSE(secrets::open(key, flip_hex(*sealed, 0), aad).ok());
    }
    SUBCASE("ciphertext") {
        CHECK_FALSE(secrets::open(key, flip_hex(*sealed, 30), aad).ok());
    }
    SUBCASE("tag") {
        CHECK_FALSE(secrets::open(key, flip_hex(*sealed, sealed->size() - 1), aad).ok());
    }
    SUBCASE("truncated") {
        CHECK_FALSE(secrets::open(key, sealed->substr(0, sealed->size() - 2), aad).ok());
    }
    SUBCASE("another name") {
        CHECK_FALSE(secrets::open(key, *sealed, secrets::secret_aad("web", "OTHER")).ok());
    }
    SUBCASE("another app") {
        CHECK_FALSE(secrets::open(key, *sealed, secrets::secret_aad("api", "API_KEY")).ok());
    }
    SUBCASE("another key") {
        auto opened = secrets::open(secrets::Key::random(), *sealed, aad);
        REQUIRE_FALSE(opened.ok());
        CHECK(opened.error().message == "authentication failed");
    }
    SUBCASE("not hex") {
        CHECK_FALSE(secrets::open(key, "zz" + sealed->substr(2), aad).ok());
    }
}

TEST_CASE("master key: created once, 0600 in a 0700 directory, never overwritten") {
    test::TempDir dir;
    auto keys = dir.path() / "keys";
    REQUIRE(secrets::ensure_master_key(keys, true).ok());
    struct stat st {};
    REQUIRE(::stat((keys / "master.key").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(st.st_size == 32);
    REQUIRE(::stat(keys.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    auto first = common::read_file(keys / "master.key");
    REQUIRE(secrets::ensure_master_key(keys, true).ok());
    CHECK(*common::read_file(keys / "master.key") == *first);
    CHECK(secrets::load_master_key(keys).ok());

    SUBCASE("a missing key is not replaced when secrets exist") {
        std::filesystem::remove(keys / "master.key");
        auto again = secrets::ensure_master_key(keys, false);
        REQUIRE_FALSE(again.ok());
        CHECK(again.error().message.find("restore the key") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(keys / "master.key"));
    }
    SUBCASE("a damaged key file is refused") {
        REQUIRE(common::atomic_write_file(keys / "master.key", "short", 0600).ok());
        auto loaded = secrets::load_master_key(keys);
        REQUIRE_FALSE(loaded.ok());
        CHECK(loaded.error().message.find("damaged") != std::string::npos);
    }
}

TEST_CASE("env vars: secrets are stored sealed and resolved for a release") {
    test::TempDir dir;
    auto store = open_store(dir);
    secrets::EnvVars env(*store, dir.path() / "keys");
    REQUIRE(env.init().ok());
    const std::string secret = "hunter2-but-much-longer";
    REQUIRE(env.set("web", {{"API_KEY", secret, true}, {"MODE", "fast", false}}).ok());

    auto listed = env.list("web");
    REQUIRE(listed.size() == 2);
    CHECK(listed[0].name == "API_KEY");
    CHECK(listed[0].secret);
    CHECK(listed[0].value.empty());
    CHECK(listed[1].value == "fast");
    auto rows = store->env("web");
    CHECK(rows[0].value.find("hunter2") == std::string::npos);

    common::AppConfig config;
    auto resolved = env.for_release("web", config.build.secrets);
    REQUIRE(resolved.ok());
    CHECK(resolved->run.at("API_KEY") == secret);
    CHECK(resolved->run.at("MODE") == "fast");    // the agent's value wins over deploy.toml's
    CHECK(resolved->build.count("API_KEY") == 0); // not listed in build.secrets
    CHECK(resolved->secret_values == std::vector<std::string>{secret});

    SUBCASE("build.secrets lets the build see a secret") {
        config.build.secrets = {"API_KEY"};
        auto built = env.for_release("web", config.build.secrets);
        REQUIRE(built.ok());
        CHECK(built->build.at("API_KEY") == secret);
    }
    SUBCASE("build.secrets naming an unknown secret fails") {
        config.build.secrets = {"MODE"};
        auto built = env.for_release("web", config.build.secrets);
        REQUIRE_FALSE(built.ok());
        CHECK(built.error().message.find("MODE") != std::string::npos);
    }
    SUBCASE("a row moved to another name does not decrypt") {
        REQUIRE(store->exec("UPDATE env SET name = 'MOVED' WHERE name = 'API_KEY'").ok());
        auto moved = env.for_release("web", {});
        REQUIRE_FALSE(moved.ok());
        CHECK(moved.error().message.find("cannot decrypt secret MOVED") != std::string::npos);
    }
    SUBCASE("a wrong master key fails clearly") {
        auto other = secrets::Key::random();
        REQUIRE(common::atomic_write_file(dir.path() / "keys" / "master.key",
                                          std::string(other.bytes()), 0600)
                    .ok());
        auto wrong = env.for_release("web", {});
        REQUIRE_FALSE(wrong.ok());
        CHECK(wrong.error().message.find("is not the one its secrets were encrypted with") !=
              std::string::npos);
        CHECK_FALSE(env.set("web", {{"NEW_SECRET", "another-long-value", true}}).ok());
        CHECK(env.list("web").size() == 2); // nothing changed
    }
    SUBCASE("bad input changes nothing") {
        CHECK(env.set("web", {{"OK_NAME", "v", false}, {"1BAD", "v", false}}).error().kind ==
              ErrorKind::usage);
        CHECK(env.set("web", {{"PORT", "80", false}}).error().kind == ErrorKind::usage);
        CHECK(env.set("web", {{"SHORT", "1234567", true}}).error().kind == ErrorKind::usage);
        CHECK(env.unset("web", {"MODE", "ABSENT"}).error().kind == ErrorKind::not_found);
        CHECK(env.list("web").size() == 2);
    }
    SUBCASE("a release keeps redacting the values it started with") {
        REQUIRE(env.remember("web", "v1").ok());
        REQUIRE(env.set("web", {{"API_KEY", "the-replacement-value", true}}).ok());
        auto values = env.secret_values("web", "v1");
        REQUIRE(values.ok());
        CHECK(std::count(values->begin(), values->end(), secret) == 1);
        CHECK(std::count(values->begin(), values->end(), "the-replacement-value") == 1);
        REQUIRE(env.unset("web", {"API_KEY"}).ok());
        CHECK(*env.secret_values("web", "v1") == std::vector<std::string>{secret});
        CHECK(env.secret_values("web", "v2")->empty());
    }
    SUBCASE("unset removes") {
        REQUIRE(env.unset("web", {"API_KEY"}).ok());
        auto after = env.for_release("web", {});
        REQUIRE(after.ok());
        CHECK(after->run.count("API_KEY") == 0);
        CHECK(after->secret_values.empty());
    }
}

TEST_CASE("env names: POSIX names, reserved ones refused") {
    CHECK(common::check_env_name("DATABASE_URL").ok());
    CHECK(common::check_env_name("_x1").ok());
    CHECK_FALSE(common::check_env_name("").ok());
    CHECK_FALSE(common::check_env_name("1X").ok());
    CHECK_FALSE(common::check_env_name("A-B").ok());
    CHECK_FALSE(common::check_env_name("A=B").ok());
    for (const char* reserved : {"PORT", "PATH", "HOME", "LANG"})
        CHECK(common::check_env_name(reserved).error().message.find("reserved") !=
              std::string::npos);
}

TEST_CASE("redactor: longest value first, short values ignored") {
    secrets::Redactor redactor({"abcdefgh", "abcdefghijkl", "short", "line-one-x\nline-two-y"});
    CHECK(redactor.apply("x abcdefghijkl y abcdefgh z") == "x [redacted] y [redacted] z");
    CHECK(redactor.apply("abcdefghabcdefgh") == "[redacted][redacted]");
    CHECK(redactor.apply("a short text") == "a short text");
    CHECK(redactor.apply("got line-two-y") == "got [redacted]"); // one line of a multi-line value
    CHECK(secrets::Redactor(std::vector<std::string>{}).apply("unchanged") == "unchanged");
}

TEST_CASE("stream redactor: the same output however the stream is cut") {
    const std::vector<std::string> values = {"S3CRET-VALUE-0123456789", "S3CRET-VALUE",
                                             "overlap-ABCDEFGH", "ABCDEFGH-tail"};
    std::string input;
    std::mt19937 random(42);
    const std::vector<std::string> pieces = {"text ", "S3CRET-VALUE-0123456789", "S3CRET-VALUE",
                                             "\n",    "overlap-ABCDEFGH-tail",   "S3CRET-VAL",
                                             "x"};
    for (int i = 0; i < 4000; ++i)
        input += pieces[random() % pieces.size()];
    input += std::string(secrets::StreamRedactor::k_max_line + 100, 'y'); // a long line
    input += "S3CRET-VALUE-0123456789" + std::string(secrets::StreamRedactor::k_max_line, 'z');
    input += "S3CRET-VALUE end";
    const std::string expected = secrets::Redactor(values).apply(input);
    CHECK(expected.find("S3CRET-VALUE") == std::string::npos);

    for (std::size_t chunk : {1u, 7u, 64u, 4096u, 70000u}) {
        CAPTURE(chunk);
        std::string out;
        secrets::StreamRedactor stream(secrets::Redactor(values),
                                       [&](std::string_view text) { out.append(text); });
        for (std::size_t at = 0; at < input.size(); at += chunk)
            stream.feed(std::string_view(input).substr(at, chunk));
        stream.flush();
        CHECK(out == expected);
    }
}
