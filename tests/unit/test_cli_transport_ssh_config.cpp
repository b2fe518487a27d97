// cli/transport/ssh_config: the OpenSSH client configuration as deployctl reads it for
// ssh:// hosts: Host patterns and Match, first value wins, Include, tokens, ProxyJump
// chains, and what is refused (StrictHostKeyChecking no, ProxyCommand, loops).
// agent_socket_of: where direct-streamlocal channels go.
#include <agent/api/unix_socket.hpp>
#include <cli/transport/ssh_client.hpp>
#include <cli/transport/ssh_config.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace cli::transport;

namespace {

struct Config {
    test::TempDir dir;
    fs::path home = dir.path() / "home";
    SshConfigSource source;

    explicit Config(const std::string& text, const std::string& system_text = {}) {
        fs::create_directories(home / ".ssh");
        std::ofstream(home / ".ssh" / "config") << text;
        source.system_file = dir.path() / "ssh_config";
        std::ofstream(source.system_file) << system_text;
    }
    SshHostConfig read(const std::string& host, const std::string& user = {}) const {
        auto config = read_ssh_config(source, host, user, home);
        REQUIRE(config);
        return *config;
    }
    SshOptions apply(const std::string& host, const std::string& user = {}, int port = 0,
                     bool accept_new = false) const {
        SshOptions options;
        options.host = host;
        options.user = user;
        options.port = port;
        options.home = home;
        options.accept_new_host_key = accept_new;
        auto ok = apply_ssh_config(options, source);
        REQUIRE_MESSAGE(ok, (ok ? "" : ok.error().message));
        return options;
    }
    common::Error refused(const std::string& host) const {
        SshOptions options;
        options.host = host;
        options.home = home;
        auto ok = apply_ssh_config(options, source);
        REQUIRE_FALSE(ok);
        return ok.error();
    }
};

} // namespace

TEST_CASE("ssh config: a Host alias gives the address, user, port and key") {
    Config config("# the team's servers\n"
                  "Host web1 web1.prod\n"
                  "    HostName 10.0.0.5\n"
                  "    User deploy\n"
                  "    Port 2222\n"
                  "    IdentityFile ~/.ssh/deploy_key\n"
                  "Host db*\n"
                  "    User dba\n");
    const auto options = config.apply("web1");
    CHECK(options.host == "10.0.0.5");
    CHECK(options.alias == "web1");
    CHECK(options.user == "deploy");
    CHECK(options.port == 2222);
    REQUIRE(options.identity_files.size() == 1);
    CHECK(options.identity_files[0] == (config.home / ".ssh" / "deploy_key").string());
    CHECK(config.apply("web1.prod").host == "10.0.0.5");

    // Not an alias: the name stays, defaults apply.
    const auto other = config.apply("web2");
    CHECK(other.host == "web2");
    CHECK(other.alias.empty());
    CHECK(other.port == 22);
    CHECK(other.user.empty());
    CHECK(other.identity_files.empty());
    CHECK(config.apply("db-3").user == "dba");
}

TEST_CASE("ssh config: the URL's user and port win over the config's") {
    Config config("Host web1\n  User deploy\n  Port 2222\n");
    const auto options = config.apply("web1", "alice", 2200);
    CHECK(options.user == "alice");
    CHECK(options.port == 2200);
}

TEST_CASE("ssh config: the first value wins; IdentityFile gathers; keywords are any case") {
    Config config("Host web*\n"
                  "  user first\n"
                  "  IDENTITYFILE ~/.ssh/a\n"
                  "Host *\n"
                  "  User second\n"
                  "  Port=2022\n"
                  "  IdentityFile = \"~/.ssh/b c\"\n"
                  "  UnknownKeyword whatever\n",
                  "Host *\n  User system\n  Port 23\n");
    const auto read = config.read("web9");
    CHECK(read.user == "first");
    CHECK(read.port == 2022);
    REQUIRE(read.identity_files.size() == 2);
    CHECK(read.identity_files[0] == "~/.ssh/a");
    CHECK(read.identity_files[1] == "~/.ssh/b c");
    // /etc/ssh/ssh_config comes after ~/.ssh/config.
    Config system_only("", "Host *\n  User system\n");
    CHECK(system_only.read("x").user == "system");
}

TEST_CASE("ssh config: negated patterns and ? match as ssh matches them") {
    Config config("Host *.prod !bastion.prod\n  User ops\nHost web?\n  Port 2000\n");
    CHECK(config.read("api.prod").user == "ops");
    CHECK_FALSE(config.read("bastion.prod").user);
    CHECK(config.read("WEB1").port == 2000); // host names are case-insensitive
    CHECK_FALSE(config.read("web10").port);
}

TEST_CASE("ssh config: Match host sees the HostName, originalhost the name typed") {
    Config config("Host prod\n"
                  "  HostName 10.1.2.3\n"
                  "Match host 10.1.*\n"
                  "  User internal\n"
                  "Match originalhost prod !user root\n"
                  "  Port 2201\n"
                  "Match exec \"true\"\n"
                  "  IdentityFile ~/.ssh/never\n"
                  "Match all\n"
                  "  ConnectTimeout 7\n");
    const auto read = config.read("prod", "alice");
    CHECK(read.host_name == "10.1.2.3");
    CHECK(read.user == "internal");
    CHECK(read.port == 2201);
    CHECK(read.identity_files.empty()); // Match exec is never run, never matches
    CHECK(read.connect_timeout_s == 7);
    CHECK_FALSE(config.read("prod", "root").port); // user criterion: the user given
}

TEST_CASE("ssh config: Include reads files relative to ~/.ssh, by glob") {
    Config config("Include config.d/*\nHost *\n  User fallback\n");
    fs::create_directories(config.home / ".ssh" / "config.d");
    std::ofstream(config.home / ".ssh" / "config.d" / "10-web") << "Host web\n  User webuser\n";
    std::ofstream(config.home / ".ssh" / "config.d" / "20-db") << "Host db\n  User dbuser\n";
    CHECK(config.read("web").user == "webuser");
    CHECK(config.read("db").user == "dbuser");
    CHECK(config.read("other").user == "fallback");
}

TEST_CASE("ssh config: an Include of itself is an error, not a hang") {
    Config config("Include config\n");
    auto read = read_ssh_config(config.source, "x", "", config.home);
    REQUIRE_FALSE(read);
    CHECK(read.error().message.find("Include") != std::string::npos);
}

TEST_CASE("ssh config: tokens in IdentityFile and UserKnownHostsFile") {
    Config config("Host web\n"
                  "  HostName %h.example.net\n"
                  "  User deploy\n"
                  "  IdentityFile %d/keys/%r@%h-%p\n"
                  "  UserKnownHostsFile ~/.ssh/known_%n /etc/known none\n");
    const auto options = config.apply("web");
    CHECK(options.host == "web.example.net");
    REQUIRE(options.identity_files.size() == 1);
    CHECK(options.identity_files[0] ==
          (config.home / "keys" / "deploy@web.example.net-22").string());
    REQUIRE(options.known_hosts.size() == 2);
    CHECK(options.known_hosts[0] == config.home / ".ssh" / "known_web");
    CHECK(options.known_hosts[1] == "/etc/known");
}

TEST_CASE("ssh config: IdentitiesOnly, ConnectTimeout, ServerAliveInterval") {
    Config config("Host web\n  IdentitiesOnly yes\n  ConnectTimeout 3\n  ServerAliveInterval 0\n"
                  "Host slow\n  ServerAliveInterval 60\n");
    const auto web = config.apply("web");
    CHECK(web.identities_only);
    CHECK(web.connect_timeout_s == 3);
    CHECK(web.keepalive_s == 0);
    const auto slow = config.apply("slow");
    CHECK_FALSE(slow.identities_only);
    CHECK(slow.connect_timeout_s == 10);
    CHECK(slow.keepalive_s == 60);
}

TEST_CASE("ssh config: a bad number names the file and line") {
    Config config("Host web\n  Port http\n");
    const auto error = config.refused("web");
    CHECK(error.kind == common::ErrorKind::config);
    CHECK(error.message.find("~/.ssh/config:2") != std::string::npos);
    CHECK(error.message.find("Port") != std::string::npos);
}

TEST_CASE("ssh config: StrictHostKeyChecking accept-new records, no is refused") {
    Config config("Host new\n  StrictHostKeyChecking accept-new\n"
                  "Host trusting\n  StrictHostKeyChecking no\n"
                  "Host strict\n  StrictHostKeyChecking yes\n");
    CHECK(config.apply("new").accept_new_host_key);
    CHECK_FALSE(config.apply("strict").accept_new_host_key);
    CHECK(config.apply("strict", "", 0, true).accept_new_host_key); // the flag still counts
    const auto error = config.refused("trusting");
    CHECK(error.kind == common::ErrorKind::config);
    CHECK(error.message.find("StrictHostKeyChecking no") != std::string::npos);
    CHECK(error.message.find("~/.ssh/config:4") != std::string::npos);
    CHECK(error.message.find("accept-new") != std::string::npos);
}

TEST_CASE("ssh config: ProxyCommand is refused with what to use instead") {
    Config config("Host web\n  ProxyCommand ssh -W %h:%p bastion\n"
                  "Host direct\n  ProxyCommand none\n");
    const auto error = config.refused("web");
    CHECK(error.message.find("ProxyCommand") != std::string::npos);
    CHECK(error.message.find("ProxyJump") != std::string::npos);
    CHECK(config.apply("direct").jumps.empty());
}

TEST_CASE("ssh config: ProxyJump values") {
    auto hops = parse_proxy_jump("bastion,ops@jump2:2222,ssh://root@[::1]:2200,ssh://edge/");
    REQUIRE(hops);
    REQUIRE(hops->size() == 4);
    CHECK((*hops)[0].host == "bastion");
    CHECK((*hops)[0].user.empty());
    CHECK((*hops)[0].port == 0);
    CHECK((*hops)[1].user == "ops");
    CHECK((*hops)[1].host == "jump2");
    CHECK((*hops)[1].port == 2222);
    CHECK((*hops)[2].host == "::1");
    CHECK((*hops)[2].port == 2200);
    CHECK((*hops)[3].host == "edge");
    CHECK_FALSE(parse_proxy_jump("host:notaport"));
    CHECK_FALSE(parse_proxy_jump("user@"));
    CHECK_FALSE(parse_proxy_jump(","));
}

TEST_CASE("ssh config: each ProxyJump hop is configured from the file too") {
    Config config("Host target\n"
                  "  HostName 10.0.0.9\n"
                  "  ProxyJump outer,inner:2022\n"
                  "Host outer\n"
                  "  HostName bastion.example.net\n"
                  "  User jumper\n"
                  "  IdentityFile ~/.ssh/jump_key\n"
                  "Host inner\n"
                  "  User second\n"
                  "  ProxyJump ignored-because-reached-through-outer\n");
    const auto options = config.apply("target", "app");
    CHECK(options.host == "10.0.0.9");
    REQUIRE(options.jumps.size() == 2);
    CHECK(options.jumps[0].host == "bastion.example.net");
    CHECK(options.jumps[0].user == "jumper");
    CHECK(options.jumps[0].port == 22);
    REQUIRE(options.jumps[0].identity_files.size() == 1);
    CHECK(options.jumps[1].host == "inner");
    CHECK(options.jumps[1].user == "second");
    CHECK(options.jumps[1].port == 2022);
    CHECK(options.jumps[1].jumps.empty());
}

TEST_CASE("ssh config: the first hop's own ProxyJump comes before it") {
    Config config("Host target\n  ProxyJump edge\n"
                  "Host edge\n  ProxyJump outer\n");
    const auto options = config.apply("target");
    REQUIRE(options.jumps.size() == 2);
    CHECK(options.jumps[0].host == "outer");
    CHECK(options.jumps[1].host == "edge");
    CHECK(config.apply("target", "", 0, true).jumps[0].accept_new_host_key); // the flag
}

TEST_CASE("ssh config: a ProxyJump loop is an error; none turns a wildcard's off") {
    Config config("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n"
                  "Host inside bastion\n  ProxyJump none\n"
                  "Host *\n  ProxyJump bastion\n");
    const auto error = config.refused("a");
    CHECK(error.kind == common::ErrorKind::config);
    CHECK(error.message.find("hops") != std::string::npos);
    CHECK(config.apply("inside").jumps.empty());
    const auto outside = config.apply("outside");
    REQUIRE(outside.jumps.size() == 1);
    CHECK(outside.jumps[0].host == "bastion");
}

TEST_CASE("ssh config: -F, DEPLOYCTL_SSH_CONFIG and none") {
    test::TempDir dir;
    const auto file = dir.path() / "team_config";
    std::ofstream(file) << "Host web\n  User from-file\n";
    ::setenv("DEPLOYCTL_SSH_CONFIG", file.c_str(), 1);
    auto from_env = ssh_config_source("");
    REQUIRE(from_env.file);
    CHECK(*from_env.file == file);
    auto read = read_ssh_config(from_env, "web", "", dir.path());
    REQUIRE(read);
    CHECK(read->user == "from-file");
    CHECK(*ssh_config_source("/other").file == "/other"); // -F wins over the variable
    ::unsetenv("DEPLOYCTL_SSH_CONFIG");
    CHECK_FALSE(ssh_config_source("").file);
    auto none = read_ssh_config(ssh_config_source("none"), "web", "", dir.path());
    REQUIRE(none);
    CHECK_FALSE(none->user);
    auto missing = read_ssh_config(ssh_config_source(dir.path() / "nope"), "web", "", dir.path());
    REQUIRE_FALSE(missing);
    CHECK(missing.error().message.find("does not exist") != std::string::npos);
}

TEST_CASE("agent_socket_of: the default socket only with the default agent command") {
    // deployctl's idea of the default socket is the agent's.
    CHECK(std::string(cli::transport::k_default_agent_socket) == agent::api::k_default_socket);
    cli::transport::SshOptions options;
    CHECK(cli::transport::agent_socket_of(options) == "/run/deploy-agent/agent.sock");
    SUBCASE("a command of the user's own may reach another socket: none is guessed") {
        options.agent_command = {"/opt/deploy-agent", "dial-stdio", "--socket", "/srv/a.sock"};
        CHECK(cli::transport::agent_socket_of(options).empty());
        options.agent_socket = "/srv/a.sock";
        CHECK(cli::transport::agent_socket_of(options) == "/srv/a.sock");
    }
    SUBCASE("\"\" turns it off") {
        options.agent_socket = "";
        CHECK(cli::transport::agent_socket_of(options).empty());
    }
}
