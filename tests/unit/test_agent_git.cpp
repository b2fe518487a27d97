// agent/git/: the app a push names (SSH_ORIGINAL_COMMAND), the push keys of an
// authorized_keys file, and a pushed commit packaged exactly as deployctl deploy packages
// the same tree (against real git repositories).
#include <agent/git/deploy_key.hpp>
#include <agent/git/fetch.hpp>
#include <agent/git/keys.hpp>
#include <agent/git/push_client.hpp>
#include <agent/git/repository.hpp>
#include <cli/package/git_tree.hpp>
#include <common/hash.hpp>
#include <common/ssh_key.hpp>

#include <doctest/doctest.h>

#include <map>

#include "git_repo.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using agent::git::pushed_app;
using test::git;
using test::write;

namespace {

const std::string k_key = "AAAAC3NzaC1lZDI1NTE5AAAAIEalXEh10v9Cd7Iy1MWyWZ948m+NmvQ5Q9d3MJMg01Ce";
const std::string k_fingerprint = "SHA256:tK57CdxuFTNLV/JoMa1HVX36bYbY5grxfuI9P7mRoDg";

std::string app_of(const std::string& command) {
    std::string error;
    auto app = pushed_app(command, error);
    return app.empty() ? "error: " + error : app;
}

} // namespace

TEST_CASE("pushed_app: the app of git push's command, and what is refused") {
    CHECK(app_of("git-receive-pack '/hello'") == "hello");
    CHECK(app_of("git-receive-pack 'hello.git'") == "hello");
    CHECK(app_of("git-receive-pack '~/hello/'") == "hello");
    CHECK(app_of("git receive-pack '/web-2'") == "web-2");
    CHECK(app_of("git-upload-pack '/hello'").find("may only push") != std::string::npos);
    CHECK(app_of("sh -c 'cat /etc/shadow'").find("may only push with git") != std::string::npos);
    CHECK(app_of("").find("forced command") != std::string::npos);
    CHECK(app_of("git-receive-pack '/../other'").find("not an app's name") != std::string::npos);
    CHECK(app_of("git-receive-pack '/Hello'").find("not an app's name") != std::string::npos);
    CHECK(app_of("git-receive-pack '/a' '/b'").find("one repository") != std::string::npos);
}

TEST_CASE("push keys: the line keys add writes reads back; other lines are not push keys") {
    agent::git::PushKey key{"alice", {"hello", "api"}, "ssh-ed25519", "", "/run/my agent.sock"};
    const auto line = agent::git::push_key_line("/usr/bin/deploy-agent", key, k_key);
    CHECK(line.rfind("restrict,command=\"", 0) == 0);
    CHECK(line.find(
              "git-receive --key alice --app hello --app api --socket '/run/my agent.sock'\"") !=
          std::string::npos);
    const std::string text = "ssh-ed25519 " + k_key + " admin@laptop\n" +
                             "command=\"/usr/bin/other\" ssh-ed25519 " + k_key + " x\n" + line +
                             "\n# a comment\n";
    const auto keys = agent::git::read_push_keys(text);
    REQUIRE(keys.size() == 1);
    CHECK(keys[0].name == "alice");
    CHECK(keys[0].apps == std::vector<std::string>{"hello", "api"});
    CHECK(keys[0].type == "ssh-ed25519");
    CHECK(keys[0].fingerprint == k_fingerprint);
    CHECK(keys[0].socket == "/run/my agent.sock");
}

TEST_CASE("package_commit: a pushed commit is the tree deployctl deploy sends") {
    test::TempDir tmp;
    const fs::path work = tmp.path() / "work";
    REQUIRE(git(tmp.path(), {"init", "-q", work.string()}));
    write(work / "deploy.toml", "app = \"hello\"\n");
    write(work / "index.html", "<h1>hello</h1>\n");
    write(work / "bin/start", "#!/bin/sh\nexec echo hi\n");
    fs::permissions(work / "bin/start", fs::perms::owner_all, fs::perm_options::add);
    fs::create_symlink("bin/start", work / "current");
    write(work / ".gitignore", "*.log\n");
    REQUIRE(git(work, {"add", "-A"}));
    REQUIRE(git(work, {"commit", "-q", "-m", "First\n\nBody."}));
    const fs::path bare = tmp.path() / "hello.git";
    REQUIRE(agent::git::ensure_repository(bare));
    REQUIRE(agent::git::ensure_repository(bare)); // again: already there
    REQUIRE(git(work, {"push", "-q", bare.string(), "main"}));
    write(work / "debug.log", "not committed\n");

    auto local = cli::package::package_source(work, cli::package::Mode::committed);
    REQUIRE(local);
    auto pushed = agent::git::package_commit(bare, {}, local->commit());
    REQUIRE(pushed);
    const auto& packaged = **pushed;
    CHECK(packaged.manifest.digest() == local->manifest().digest());
    CHECK(packaged.commit == local->commit());
    CHECK(packaged.message == "First");
    CHECK(packaged.config_text == "app = \"hello\"\n");
    for (const auto& entry : packaged.manifest.entries) {
        if (entry.kind == common::EntryKind::symlink) {
            CHECK(entry.target == "bin/start");
            continue;
        }
        auto content = packaged.read(entry.digest);
        REQUIRE(content);
        CHECK(common::sha256_hex(*content) == entry.digest);
    }
    CHECK_FALSE(agent::git::package_commit(bare, {}, std::string(40, 'a')));
    CHECK_FALSE(agent::git::package_commit(tmp.path() / "none.git", {}, local->commit()));
}

TEST_CASE("Pushes: an id names one push until it ends") {
    agent::git::Pushes pushes;
    const auto began_a = pushes.begin({"hello", "alice", "deploy"});
    const auto began_b = pushes.begin({"web", "", "deploy"});
    REQUIRE(began_a);
    REQUIRE(began_b);
    const std::string a = *began_a, b = *began_b;
    CHECK(a != b);
    CHECK(a.size() == 32);
    REQUIRE(pushes.find(a));
    CHECK(pushes.find(a)->app == "hello");
    CHECK(pushes.find(a)->key == "alice");
    pushes.end(a);
    CHECK_FALSE(pushes.find(a));
    CHECK(pushes.find(b));
    CHECK_FALSE(pushes.find("nope"));
}

TEST_CASE("deploy keys: an ECDSA P-256 key, PEM for libssh2, an OpenSSH public line") {
    auto key = agent::git::make_deploy_key("hello");
    REQUIRE(key);
    CHECK(key->private_pem.rfind("-----BEGIN EC PRIVATE KEY-----", 0) == 0);
    auto parsed = common::parse_public_key(key->public_line);
    REQUIRE(parsed);
    CHECK(parsed->type == "ecdsa-sha2-nistp256");
    CHECK(parsed->comment == "deploy-agent@hello");
    CHECK(parsed->blob.size() == 4 + 19 + 4 + 8 + 4 + 65); // name, curve, uncompressed point
    auto other = agent::git::make_deploy_key("hello");
    REQUIRE(other);
    CHECK(other->public_line != key->public_line);
}

TEST_CASE("ssh_host_of: what a host key is trusted for") {
    using agent::git::ssh_host_of;
    CHECK(ssh_host_of("ssh://git@github.com/acme/hello.git") == "github.com");
    CHECK(ssh_host_of("ssh://git@github.com:22/acme/hello.git") == "github.com");
    CHECK(ssh_host_of("ssh://git@127.0.0.1:2222/srv/hello.git") == "127.0.0.1:2222");
    CHECK(ssh_host_of("ssh://example.com/x.git") == "example.com");
    CHECK(ssh_host_of("git@github.com:acme/hello.git") == "github.com");
    CHECK(ssh_host_of("gitlab.example.com:acme/hello.git") == "gitlab.example.com");
}
