#include <agent/config.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "temp_dir.hpp"

namespace {

const char* k_source = "/etc/deployctl/agent.toml";
const std::filesystem::path k_base = "/etc/deployctl";

common::Result<agent::AgentConfig> parse(std::string_view text) {
    return agent::parse_agent_config(text, k_source, k_base);
}

// The message of a parse expected to fail with ErrorKind::config.
std::string parse_error(std::string_view text) {
    auto config = parse(text);
    REQUIRE_FALSE(config.ok());
    CHECK(config.error().kind == common::ErrorKind::config);
    return config.error().message;
}

bool starts_with(const std::string& text, const std::string& prefix) {
    return text.rfind(prefix, 0) == 0;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

const char* k_full = R"(data_dir = "/var/lib/deployctl"
listen = "127.0.0.1:7070"
engine = "docker"
engine_bin = "/usr/local/bin/docker"
container_network = "deploy-net"
cgroup_root = "/srv/cgroup"
proxy_bin = "/usr/libexec/deploy-proxy"
failed_logins_per_minute = 50
max_runs_per_app = 2
proxy_threads = 4
metrics_listen = "127.0.0.1:9470"

[proxy]
listen = "0.0.0.0:80"
https_listen = "0.0.0.0:443"
redirect_https = true

[[proxy.certificates]]
cert = "certs/a.crt"
key = "certs/a.key"

[[proxy.certificates]]
cert = "/etc/ssl/b.example.test.crt"
key = "/etc/ssl/private/b.example.test.key"
)";

} // namespace

TEST_CASE("agent.toml: a full file sets every key") {
    auto config = parse(k_full);
    REQUIRE(config.ok());
    CHECK(config->data_dir == "/var/lib/deployctl");
    CHECK(config->listen == "127.0.0.1:7070");
    CHECK(config->engine == "docker");
    CHECK(config->engine_bin == "/usr/local/bin/docker");
    CHECK(config->container_network == "deploy-net");
    CHECK(config->cgroup_root == "/srv/cgroup");
    CHECK(config->proxy_bin == "/usr/libexec/deploy-proxy");
    CHECK(config->failed_logins_per_minute == 50);
    CHECK(config->max_runs_per_app == 2);
    CHECK(config->proxy_threads == 4);
    CHECK(config->metrics_listen == "127.0.0.1:9470");
    CHECK(config->proxy_listen == "0.0.0.0:80");
    CHECK(config->proxy_https_listen == "0.0.0.0:443");
    CHECK(config->redirect_https == true);
    REQUIRE(config->certificates.size() == 2);
    // In file order: the first one is the proxy's default certificate.
    CHECK(config->certificates[0].cert == "/etc/deployctl/certs/a.crt");
    CHECK(config->certificates[0].key == "/etc/deployctl/certs/a.key");
    CHECK(config->certificates[1].cert == "/etc/ssl/b.example.test.crt");
    CHECK(config->certificates[1].key == "/etc/ssl/private/b.example.test.key");
}

TEST_CASE("agent.toml: failed_logins_per_minute is an integer from 0") {
    CHECK_FALSE(parse("")->failed_logins_per_minute.has_value());
    CHECK(parse("failed_logins_per_minute = 0")->failed_logins_per_minute == 0);
    CHECK(contains(parse_error("failed_logins_per_minute = -1"),
                   "failed_logins_per_minute must be an integer from 0 to 1000000"));
    CHECK(contains(parse_error("failed_logins_per_minute = \"20\""),
                   "failed_logins_per_minute must be an integer"));
}

TEST_CASE("agent.toml: proxy_threads is an integer from 0 (one per usable CPU) to 1024") {
    CHECK_FALSE(parse("")->proxy_threads.has_value());
    CHECK(parse("proxy_threads = 0")->proxy_threads == 0);
    CHECK(contains(parse_error("proxy_threads = 1025"),
                   "proxy_threads must be an integer from 0 to 1024"));
    CHECK(contains(parse_error("proxy_threads = \"auto\""), "proxy_threads must be an integer"));
}

TEST_CASE("agent.toml: app_ports is a range LOW-HIGH of ports from 1024") {
    CHECK_FALSE(parse("")->app_ports.has_value());
    CHECK(parse("app_ports = \"20000-20999\"")->app_ports == "20000-20999");
    for (const char* bad :
         {"\"20000\"", "\"80-90\"", "\"2000-1000\"", "\"1024-70000\"", "\"a-b\"", "\"1024-2048 \""})
        CHECK(contains(parse_error(std::string("app_ports = ") + bad),
                       "app_ports must be \"LOW-HIGH\" with 1024 <= LOW <= HIGH <= 65535"));
}

TEST_CASE("agent.toml: certificate paths are resolved against the file's directory") {
    SUBCASE("relative paths, normalised") {
        auto config = parse("[[proxy.certificates]]\n"
                            "cert = \"./tls/../tls/site.crt\"\n"
                            "key = \"../private/site.key\"\n");
        REQUIRE(config.ok());
        REQUIRE(config->certificates.size() == 1);
        CHECK(config->certificates[0].cert == "/etc/deployctl/tls/site.crt");
        CHECK(config->certificates[0].key == "/etc/private/site.key");
    }
    SUBCASE("absolute paths are kept") {
        auto config = parse("[[proxy.certificates]]\n"
                            "cert = \"/srv/tls/site.crt\"\n"
                            "key = \"/srv/tls/site.key\"\n");
        REQUIRE(config.ok());
        REQUIRE(config->certificates.size() == 1);
        CHECK(config->certificates[0].cert == "/srv/tls/site.crt");
        CHECK(config->certificates[0].key == "/srv/tls/site.key");
    }
    SUBCASE("another base directory") {
        auto config = agent::parse_agent_config("[[proxy.certificates]]\n"
                                                "cert = \"site.crt\"\n"
                                                "key = \"site.key\"\n",
                                                "agent.toml", "/opt/deploy/conf");
        REQUIRE(config.ok());
        REQUIRE(config->certificates.size() == 1);
        CHECK(config->certificates[0].cert == "/opt/deploy/conf/site.crt");
        CHECK(config->certificates[0].key == "/opt/deploy/conf/site.key");
    }
    SUBCASE("the inline array form") {
        auto config = parse("[proxy]\n"
                            "certificates = [{ cert = \"a.crt\", key = \"a.key\" },\n"
                            "                { cert = \"b.crt\", key = \"b.key\" }]\n");
        REQUIRE(config.ok());
        REQUIRE(config->certificates.size() == 2);
        CHECK(config->certificates[0].cert == "/etc/deployctl/a.crt");
        CHECK(config->certificates[1].key == "/etc/deployctl/b.key");
    }
}

TEST_CASE("agent.toml: a file of top-level keys only, with no [proxy]") {
    auto config = parse("listen = \"0.0.0.0:7070\"\nengine = \"process\"\n");
    REQUIRE(config.ok());
    CHECK(config->listen == "0.0.0.0:7070");
    CHECK(config->engine == "process");
    CHECK_FALSE(config->data_dir.has_value());
    CHECK_FALSE(config->engine_bin.has_value());
    CHECK_FALSE(config->container_network.has_value());
    CHECK_FALSE(config->cgroup_root.has_value());
    CHECK_FALSE(config->proxy_bin.has_value());
    CHECK_FALSE(config->proxy_listen.has_value());
    CHECK_FALSE(config->proxy_https_listen.has_value());
    CHECK_FALSE(config->redirect_https.has_value());
    CHECK(config->certificates.empty());
}

TEST_CASE("agent.toml: an empty file sets nothing") {
    auto config = parse("# nothing here\n");
    REQUIRE(config.ok());
    CHECK_FALSE(config->listen.has_value());
    CHECK_FALSE(config->engine.has_value());
    CHECK_FALSE(config->redirect_https.has_value());
    CHECK(config->certificates.empty());
}

TEST_CASE("agent.toml: engine accepts auto, docker, podman and process") {
    for (const char* engine : {"auto", "docker", "podman", "process"}) {
        const std::string name = engine;
        CAPTURE(name);
        auto config = parse(std::string("engine = \"") + engine + "\"\n");
        REQUIRE(config.ok());
        CHECK(config->engine == engine);
    }
}

TEST_CASE("agent.toml: [proxy] without certificates, and redirect_https = false") {
    auto config = parse("[proxy]\nlisten = \":8080\"\nredirect_https = false\n");
    REQUIRE(config.ok());
    CHECK(config->proxy_listen == ":8080");
    CHECK(config->redirect_https == false);
    CHECK(config->certificates.empty());
}

TEST_CASE("agent.toml: unknown keys are named with the closest valid one") {
    SUBCASE("at the top level") {
        const auto m =
            parse_error("data_dir = \"/var/lib/deployctl\"\nlistn = \"127.0.0.1:7070\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:1: unknown key 'listn' in agent.toml; "
                             "did you mean 'listen'?"));
        CHECK(contains(m, "expected one of: data_dir, listen, socket, engine"));
        // The line itself and a caret under the column.
        CHECK(contains(m, "\n  2 | listn = \"127.0.0.1:7070\"\n    | ^"));
    }
    SUBCASE("a misspelt table") {
        const auto m = parse_error("listen = \"127.0.0.1:7070\"\n[proxxy]\nlisten = \":80\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:2:"));
        CHECK(contains(m, "unknown key 'proxxy' in agent.toml; did you mean 'proxy'?"));
    }
    SUBCASE("nothing close: no suggestion") {
        const auto m = parse_error("zzzzzzzzzz = 1\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:1:1: unknown key 'zzzzzzzzzz'"));
        CHECK_FALSE(contains(m, "did you mean"));
    }
    SUBCASE("in [proxy]") {
        const auto m = parse_error("[proxy]\nlisten = \":80\"\nredirect_http = true\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:3:1: unknown key 'redirect_http' in "
                             "[proxy]; did you mean 'redirect_https'?"));
        CHECK(contains(m, "\n  3 | redirect_http = true\n    | ^"));
    }
    SUBCASE("in [[proxy.certificates]]") {
        const auto m = parse_error(
            "[[proxy.certificates]]\ncert = \"a.crt\"\nkey = \"a.key\"\nchian = \"c\"\n");
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:4:1: unknown key 'chian' in "
                             "[[proxy.certificates]]"));
        CHECK(contains(m, "(expected one of: cert, key)"));
    }
    SUBCASE("a misspelt key in [[proxy.certificates]] is suggested") {
        const auto m = parse_error("[[proxy.certificates]]\ncert = \"a.crt\"\nkye = \"a.key\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:3:1: unknown key 'kye' in "
                             "[[proxy.certificates]]; did you mean 'key'?"));
    }
}

TEST_CASE("agent.toml: [[proxy.certificates]] needs both cert and key") {
    SUBCASE("no key") {
        const auto m = parse_error("[proxy]\nlisten = \":80\"\n\n[[proxy.certificates]]\n"
                                   "cert = \"a.crt\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:4:"));
        CHECK(contains(m, "[[proxy.certificates]] needs 'key' (a PEM file)"));
    }
    SUBCASE("no cert") {
        const auto m = parse_error("[[proxy.certificates]]\nkey = \"a.key\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:1:"));
        CHECK(contains(m, "[[proxy.certificates]] needs 'cert' (a PEM file)"));
    }
    SUBCASE("the second entry") {
        const auto m = parse_error("[[proxy.certificates]]\ncert = \"a.crt\"\nkey = \"a.key\"\n"
                                   "[[proxy.certificates]]\ncert = \"b.crt\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:4:"));
        CHECK(contains(m, "needs 'key'"));
    }
    SUBCASE("an empty path") {
        const auto m = parse_error("[[proxy.certificates]]\ncert = \"a.crt\"\nkey = \"\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:3:7: proxy.certificates.key must name a "
                             "file"));
    }
}

TEST_CASE("agent.toml: values of the wrong type") {
    SUBCASE("a top-level string given a number") {
        const auto m = parse_error("listen = 7070\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:1:10: listen must be a string"));
        CHECK(contains(m, "\n  1 | listen = 7070\n    |          ^"));
    }
    SUBCASE("data_dir given an array") {
        const auto m = parse_error("engine = \"auto\"\ndata_dir = [\"/a\"]\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:12: data_dir must be a string"));
    }
    SUBCASE("proxy given a string") {
        const auto m = parse_error("proxy = \"on\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:1:9: [proxy] must be a table"));
    }
    SUBCASE("proxy.listen given a number") {
        const auto m = parse_error("[proxy]\nlisten = 80\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:10: proxy.listen must be a string"));
    }
    SUBCASE("proxy.https_listen given a boolean") {
        const auto m = parse_error("[proxy]\nhttps_listen = true\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:16: proxy.https_listen must be a "
                             "string"));
    }
    SUBCASE("redirect_https given a string") {
        const auto m = parse_error("[proxy]\nredirect_https = \"yes\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:18: proxy.redirect_https must be true "
                             "or false"));
    }
    SUBCASE("certificates given a string") {
        const auto m = parse_error("[proxy]\ncertificates = \"a.crt\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:16: proxy.certificates must be an array "
                             "of tables"));
    }
    SUBCASE("certificates given an array of strings") {
        const auto m = parse_error("[proxy]\ncertificates = [\"a.crt\"]\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:17: every [[proxy.certificates]] entry "
                             "must be a table"));
    }
    SUBCASE("cert given a number") {
        const auto m = parse_error("[[proxy.certificates]]\ncert = 1\nkey = \"a.key\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:8: proxy.certificates.cert must be a "
                             "string"));
    }
}

TEST_CASE("agent.toml: engine must be one of the known ones") {
    const auto m = parse_error("listen = \"127.0.0.1:7070\"\nengine = \"kubernetes\"\n");
    INFO(m);
    CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:10: engine must be one of: auto, docker, "
                         "podman, process"));
    CHECK(contains(m, "\n  2 | engine = \"kubernetes\"\n    |          ^"));
    // Case matters.
    CHECK(contains(parse_error("engine = \"Docker\"\n"), "engine must be one of"));
}

TEST_CASE("agent.toml: redirect_https = true needs a certificate") {
    const auto m = parse_error("[proxy]\nlisten = \":80\"\nredirect_https = true\n");
    INFO(m);
    CHECK(starts_with(m, "/etc/deployctl/agent.toml:3:18: proxy.redirect_https needs at least one "
                         "[[proxy.certificates]] entry"));
    CHECK(contains(m, "\n  3 | redirect_https = true\n    |                  ^"));
    SUBCASE("an empty array is no certificate") {
        const auto empty = parse_error("[proxy]\nredirect_https = true\ncertificates = []\n");
        INFO(empty);
        CHECK(starts_with(empty, "/etc/deployctl/agent.toml:2:18: proxy.redirect_https needs"));
    }
}

TEST_CASE("agent.toml: TOML syntax errors carry the line and column") {
    SUBCASE("an unterminated string") {
        const auto m = parse_error("data_dir = \"/var/lib\"\nlisten = \"127.0.0.1:7070\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:2:25: Error while parsing string"));
        CHECK(contains(m, "\n  2 | listen = \"127.0.0.1:7070"));
    }
    SUBCASE("an unclosed table header") {
        const auto m = parse_error("listen = \"127.0.0.1:7070\"\n\n[proxy\nlisten = \":80\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:3:7: Error while parsing table header"));
        CHECK(contains(m, "\n  3 | [proxy\n    |       ^"));
    }
    SUBCASE("a key given twice") {
        const auto m = parse_error("listen = \"a:1\"\nengine = \"auto\"\nlisten = \"b:2\"\n");
        INFO(m);
        CHECK(starts_with(m, "/etc/deployctl/agent.toml:3:"));
        CHECK(contains(m, "cannot redefine existing string 'listen'"));
        CHECK(contains(m, "\n  3 | listen = \"b:2\""));
    }
}

TEST_CASE("agent.toml: load_agent_config reads a file and resolves against its directory") {
    test::TempDir dir;
    std::filesystem::create_directories(dir.path() / "conf");
    const auto path = dir.path() / "conf" / "agent.toml";
    std::ofstream(path)
        << "listen = \"127.0.0.1:7070\"\n"
           "[[proxy.certificates]]\ncert = \"tls/site.crt\"\nkey = \"tls/site.key\"\n";
    auto config = agent::load_agent_config(path);
    REQUIRE(config.ok());
    CHECK(config->listen == "127.0.0.1:7070");
    REQUIRE(config->certificates.size() == 1);
    CHECK(config->certificates[0].cert == (dir.path() / "conf" / "tls" / "site.crt").string());
    CHECK(config->certificates[0].key == (dir.path() / "conf" / "tls" / "site.key").string());

    SUBCASE("errors name the file") {
        std::ofstream(path) << "listn = \"x\"\n";
        auto bad = agent::load_agent_config(path);
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().kind == common::ErrorKind::config);
        CHECK(starts_with(bad.error().message, path.string() + ":1:1: unknown key 'listn'"));
    }
    SUBCASE("a missing file") {
        auto missing = agent::load_agent_config(dir.path() / "nope.toml");
        REQUIRE_FALSE(missing.ok());
        CHECK(missing.error().kind == common::ErrorKind::config);
        CHECK(contains(missing.error().message, "nope.toml"));
    }
}

TEST_CASE("agent.toml: tls_cert and tls_key, both or neither") {
    auto config = parse("listen = \"0.0.0.0:7443\"\ntls_cert = \"tls/agent.crt\"\n"
                        "tls_key = \"/etc/ssl/private/agent.key\"\n");
    REQUIRE(config.ok());
    REQUIRE(config->tls.has_value());
    CHECK(config->tls->cert == "/etc/deployctl/tls/agent.crt");
    CHECK(config->tls->key == "/etc/ssl/private/agent.key");
    CHECK_FALSE(parse("listen = \"127.0.0.1:7070\"\n")->tls.has_value());
    CHECK(starts_with(parse_error("tls_cert = \"a.crt\"\n"),
                      "/etc/deployctl/agent.toml:1:12: tls_cert needs tls_key"));
    CHECK(starts_with(parse_error("engine = \"process\"\ntls_key = \"a.key\"\n"),
                      "/etc/deployctl/agent.toml:2:11: tls_key needs tls_cert"));
    CHECK(contains(parse_error("tls_cert = \"\"\ntls_key = \"a.key\"\n"),
                   "tls_cert must name a file"));
    CHECK(contains(parse_error("tls_certs = \"a.crt\"\n"), "did you mean 'tls_cert'?"));
}

TEST_CASE("agent.toml: [acme] is read, its paths resolved, its mistakes refused") {
    auto config = parse("[acme]\n"
                        "directory = \"https://127.0.0.1:14000/dir\"\n"
                        "ca_file = \"pebble.pem\"\n"
                        "email = \"ops@example.com\"\n"
                        "challenges = [\"tls-alpn-01\", \"dns-01\"]\n"
                        "dns_hook = \"/usr/local/bin/dns-update --zone x\"\n"
                        "on_demand = true\n"
                        "ask = \"http://127.0.0.1:9000/allowed\"\n"
                        "retry = \"5s\"\n"
                        "[proxy]\nredirect_https = true\n");
    REQUIRE(config.ok());
    REQUIRE(config->acme.has_value());
    CHECK(*config->acme->directory == "https://127.0.0.1:14000/dir");
    CHECK(*config->acme->ca_file == "/etc/deployctl/pebble.pem");
    CHECK(*config->acme->challenges == std::vector<std::string>{"tls-alpn-01", "dns-01"});
    CHECK(*config->acme->on_demand);
    CHECK(config->acme->retry->count() == 5000);
    CHECK(config->redirect_https.value_or(false)); // [acme] alone allows redirects

    CHECK_FALSE(parse("").value().acme.has_value());
    CHECK(parse("[acme]\n").value().acme.has_value()); // an empty table turns it on

    CHECK(parse_error("[acme]\non_demand = true\n").find("needs acme.ask") != std::string::npos);
    CHECK(parse_error("[acme]\ndirectory = \"http://ca.test/dir\"\n").find("https://") !=
          std::string::npos);
    CHECK(parse_error("[acme]\nchallenges = [\"http-02\"]\n").find("unknown challenge 'http-02'") !=
          std::string::npos);
    CHECK(parse_error("[acme]\neab_kid = \"k\"\n").find("go together") != std::string::npos);
    CHECK(parse_error("[acme]\nretry = \"10ms\"\n").find("at least 1s") != std::string::npos);
    CHECK(parse_error("[acme]\nemal = \"x\"\n").find("did you mean 'email'") != std::string::npos);
    CHECK(parse_error("[proxy]\nredirect_https = true\n").find("or [acme]") != std::string::npos);
}
