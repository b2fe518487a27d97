#include <cli/hosts.hpp>

#include <doctest/doctest.h>

using cli::parse_host_url;
using cli::Scheme;

TEST_CASE("parse_host_url accepts the three URL forms") {
    SUBCASE("http on loopback with a port") {
        auto url = parse_host_url("http://127.0.0.1:7070");
        REQUIRE(url);
        CHECK(url->scheme == Scheme::http);
        CHECK(url->host == "127.0.0.1");
        CHECK(url->port == 7070);
        CHECK(url->base_url == "http://127.0.0.1:7070");
    }
    SUBCASE("https without a port, trailing slash dropped") {
        auto url = parse_host_url("https://web2.example.com/");
        REQUIRE(url);
        CHECK(url->scheme == Scheme::https);
        CHECK(url->port == 0);
        CHECK(url->base_url == "https://web2.example.com");
    }
    SUBCASE("ssh with a user") {
        auto url = parse_host_url("ssh://deploy@web1:2222");
        REQUIRE(url);
        CHECK(url->scheme == Scheme::ssh);
        CHECK(url->user == "deploy");
        CHECK(url->host == "web1");
        CHECK(url->port == 2222);
    }
    SUBCASE("IPv6 in brackets") {
        auto url = parse_host_url("http://[::1]:7070");
        REQUIRE(url);
        CHECK(url->host == "::1");
        CHECK(url->base_url == "http://[::1]:7070");
    }
}

TEST_CASE("parse_host_url rejects malformed URLs as usage errors") {
    for (const char* bad :
         {"127.0.0.1:7070", "ftp://host", "http://", "http://host:0", "http://host:99999",
          "http://host:12ab", "https://host/v1/apps", "https://user@host", "http://[::1"}) {
        CAPTURE(bad);
        auto url = parse_host_url(bad);
        REQUIRE_FALSE(url);
        CHECK(url.error().kind == common::ErrorKind::usage);
        CHECK(common::exit_code(url.error().kind) == 2);
    }
}

TEST_CASE("is_loopback_host knows 127.0.0.0/8, ::1 and localhost") {
    CHECK(cli::is_loopback_host("127.0.0.1"));
    CHECK(cli::is_loopback_host("127.1.2.3"));
    CHECK(cli::is_loopback_host("::1"));
    CHECK(cli::is_loopback_host("localhost"));
    CHECK_FALSE(cli::is_loopback_host("128.0.0.1"));
    CHECK_FALSE(cli::is_loopback_host("10.0.0.5"));
    CHECK_FALSE(cli::is_loopback_host("127.0.0.1.evil.com"));
    CHECK_FALSE(cli::is_loopback_host("localhost.evil.com"));
    CHECK_FALSE(cli::is_loopback_host("::2"));
}

TEST_CASE("check_transport: plain http only to loopback; ssh and https anywhere") {
    CHECK(cli::check_transport(*parse_host_url("http://127.0.0.1:7070")));
    CHECK(cli::check_transport(*parse_host_url("http://localhost:7070")));
    CHECK(cli::check_transport(*parse_host_url("https://10.0.0.5:7443")));
    auto remote = cli::check_transport(*parse_host_url("http://10.0.0.5:7070"));
    REQUIRE_FALSE(remote);
    CHECK(remote.error().kind == common::ErrorKind::usage);
    CHECK(remote.error().message.find("https://10.0.0.5:7070") != std::string::npos);
    CHECK(remote.error().message.find("plain HTTP is only allowed to loopback; use https:// or "
                                      "ssh://") != std::string::npos);
    auto named = cli::check_transport(*parse_host_url("http://agent.invalid:7070"));
    REQUIRE_FALSE(named);
    CHECK(named.error().kind == common::ErrorKind::usage);
    CHECK(cli::check_transport(*parse_host_url("http://[::1]:7070")));
    CHECK_FALSE(cli::check_transport(*parse_host_url("http://0.0.0.0:7070")));
    CHECK(cli::check_transport(*parse_host_url("ssh://deploy@web1")));
    CHECK(cli::check_transport(*parse_host_url("ssh://deploy@10.0.0.5:2222")));
}

namespace {
common::AppConfig config_with(std::initializer_list<std::pair<const char*, const char*>> targets) {
    common::AppConfig config;
    config.app = "hello";
    for (const auto& [name, host] : targets) {
        common::TargetConfig t;
        t.name = name;
        if (*host)
            t.hosts.push_back(host);
        config.targets[name] = t;
    }
    return config;
}
} // namespace

TEST_CASE("resolve_hosts: --host, then DEPLOYCTL_HOST, then deploy.toml") {
    auto config =
        config_with({{"production", "https://prod:7443"}, {"staging", "https://stage:7443"}});
    cli::HostSources s;
    s.config = &config;

    SUBCASE("--host wins, in order") {
        s.flags = {"http://127.0.0.1:1", "http://127.0.0.1:2"};
        s.env = "https://env:7443";
        s.target = "staging";
        auto hosts = cli::resolve_hosts(s);
        REQUIRE(hosts);
        CHECK(*hosts == std::vector<std::string>{"http://127.0.0.1:1", "http://127.0.0.1:2"});
    }
    SUBCASE("DEPLOYCTL_HOST, comma-separated") {
        s.env = "https://a:1, https://b:2";
        auto hosts = cli::resolve_hosts(s);
        REQUIRE(hosts);
        CHECK(*hosts == std::vector<std::string>{"https://a:1", "https://b:2"});
    }
    SUBCASE("-t names a target") {
        s.target = "staging";
        CHECK(*cli::resolve_hosts(s) == std::vector<std::string>{"https://stage:7443"});
    }
    SUBCASE("several targets: production is the default") {
        CHECK(*cli::resolve_hosts(s) == std::vector<std::string>{"https://prod:7443"});
    }
    SUBCASE("an unknown target lists the known ones") {
        s.target = "qa";
        auto hosts = cli::resolve_hosts(s);
        REQUIRE_FALSE(hosts);
        CHECK(hosts.error().message.find("production, staging") != std::string::npos);
    }
}

TEST_CASE("resolve_hosts: the only target, or nothing to talk to") {
    cli::HostSources s;
    SUBCASE("one target, whatever its name") {
        auto config = config_with({{"web", "https://web:7443"}});
        s.config = &config;
        CHECK(*cli::resolve_hosts(s) == std::vector<std::string>{"https://web:7443"});
    }
    SUBCASE("two targets, none called production") {
        auto config = config_with({{"a", "https://a:1"}, {"b", "https://b:1"}});
        s.config = &config;
        auto hosts = cli::resolve_hosts(s);
        REQUIRE_FALSE(hosts);
        CHECK(common::exit_code(hosts.error().kind) == 2);
    }
    SUBCASE("a target without hosts") {
        auto config = config_with({{"production", ""}});
        s.config = &config;
        auto hosts = cli::resolve_hosts(s);
        REQUIRE_FALSE(hosts);
        CHECK(hosts.error().message.find("lists no hosts") != std::string::npos);
    }
    SUBCASE("no deploy.toml, no --host") {
        auto hosts = cli::resolve_hosts(s);
        REQUIRE_FALSE(hosts);
        CHECK(hosts.error().message ==
              "no agent to talk to: pass --host URL or list hosts under [targets.NAME] in "
              "deploy.toml");
        CHECK(common::exit_code(hosts.error().kind) == 2);
    }
}

TEST_CASE("selected_target: whose agent_command and identity_file apply") {
    cli::HostSources s;
    CHECK(cli::selected_target(s) == nullptr); // no deploy.toml
    auto two = config_with({{"production", "ssh://p"}, {"staging", "ssh://s"}});
    s.config = &two;
    SUBCASE("-t names it, also when --host overrides its hosts") {
        s.target = "staging";
        s.flags = {"ssh://deploy@other"};
        REQUIRE(cli::selected_target(s) != nullptr);
        CHECK(cli::selected_target(s)->name == "staging");
    }
    SUBCASE("else production") {
        REQUIRE(cli::selected_target(s) != nullptr);
        CHECK(cli::selected_target(s)->name == "production");
    }
    SUBCASE("an unknown -t selects nothing") {
        s.target = "qa";
        CHECK(cli::selected_target(s) == nullptr);
    }
    SUBCASE("the only target, whatever its name") {
        auto one = config_with({{"web", "ssh://w"}});
        s.config = &one;
        REQUIRE(cli::selected_target(s) != nullptr);
        CHECK(cli::selected_target(s)->name == "web");
    }
    SUBCASE("several, none called production: none") {
        auto none = config_with({{"a", "ssh://a"}, {"b", "ssh://b"}});
        s.config = &none;
        CHECK(cli::selected_target(s) == nullptr);
    }
}
