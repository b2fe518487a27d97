#include <common/config.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>

#include "temp_dir.hpp"

using namespace std::chrono_literals;

namespace {
const char* k_full = R"(app = "hello"
[build]
command = "make"
timeout = "2m"
memory = "1g"
args = { NODE_ENV = "production" }
[run]
command = "./server"
port = 3000
memory = "512m"
health = { path = "/healthz", interval = "250ms", timeout = "20s" }
[deploy]
keep = 3
drain = "2s"
[env]
GREETING = "hi"
WORKERS = 4
DEBUG = false
[targets.production]
hosts = ["http://127.0.0.1:7070"]
domains = ["hello.example.com"]
)";
} // namespace

TEST_CASE("parse_config reads every section of deploy.toml") {
    auto config = common::parse_config(k_full, "deploy.toml");
    REQUIRE(config.ok());
    CHECK(config->app == "hello");
    CHECK(config->build.command == "make");
    CHECK(config->build.timeout == 120s);
    CHECK(config->build.memory == 1024ull * 1024 * 1024);
    CHECK(config->build.args.at("NODE_ENV") == "production");
    CHECK(config->run.command == "./server");
    CHECK(config->run.port == 3000);
    CHECK(config->run.memory == 512ull * 1024 * 1024);
    CHECK(config->run.health.path == "/healthz");
    CHECK(config->run.health.interval == 250ms);
    CHECK(config->run.health.timeout == 20s);
    CHECK(config->deploy.keep == 3);
    CHECK(config->deploy.drain == 2s);
    CHECK(config->env.at("GREETING") == "hi");
    CHECK(config->env.at("WORKERS") == "4");
    CHECK(config->env.at("DEBUG") == "false");
    REQUIRE(config->targets.count("production") == 1);
    CHECK(config->targets.at("production").hosts ==
          std::vector<std::string>{"http://127.0.0.1:7070"});
    CHECK(config->targets.at("production").domains ==
          std::vector<std::string>{"hello.example.com"});
    CHECK_FALSE(config->static_site.has_value());
}

TEST_CASE("parse_config applies defaults") {
    auto config = common::parse_config("app = \"a1\"\n", "deploy.toml");
    REQUIRE(config.ok());
    CHECK(config->deploy.keep == 5);
    CHECK(config->deploy.drain == 10s);
    CHECK(config->build.timeout == 5min);
    CHECK(config->run.health.path == "/");
}

TEST_CASE("parse_config errors name the file, line and column") {
    SUBCASE("syntax error") {
        auto config = common::parse_config("app = \"hello\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().kind == common::ErrorKind::config);
        CHECK(config.error().message.rfind("deploy.toml:1:", 0) == 0);
    }
    SUBCASE("wrong type shows the line and a caret") {
        auto config = common::parse_config("app = \"hello\"\n[run]\nport = \"x\"\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        const auto& m = config.error().message;
        CHECK(m.rfind("deploy.toml:3:8: run.port must be an integer from 1 to 65535", 0) == 0);
        CHECK(m.find("3 | port = \"x\"") != std::string::npos);
        CHECK(m.find("       ^") != std::string::npos);
    }
    SUBCASE("invalid duration") {
        auto config =
            common::parse_config("app = \"hello\"\n[deploy]\ndrain = \"10 parsecs\"\n", "x.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.rfind("x.toml:3:9: deploy.drain: invalid duration", 0) == 0);
    }
    SUBCASE("missing app") {
        auto config = common::parse_config("[run]\nport = 1\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.find("missing required key 'app'") != std::string::npos);
    }
    SUBCASE("invalid app name") {
        auto config = common::parse_config("app = \"Hello World\"\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.rfind("deploy.toml:1:7: app must be", 0) == 0);
    }
}

TEST_CASE("parse_config names unknown keys and suggests the closest one") {
    SUBCASE("in a section") {
        auto config = common::parse_config("app = \"hello\"\n[run]\nprot = 1\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        const auto& m = config.error().message;
        CHECK(m.rfind("deploy.toml:3:1: unknown key 'prot' in [run]; did you mean 'port'?", 0) ==
              0);
    }
    SUBCASE("at the top level") {
        auto config = common::parse_config("app = \"hello\"\n[biuld]\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.find(
                  "unknown key 'biuld' in the top level; did you mean 'build'?") !=
              std::string::npos);
    }
    SUBCASE("nothing close") {
        auto config = common::parse_config("app = \"hello\"\nzzzzzzzz = 1\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.find("did you mean") == std::string::npos);
    }
}

TEST_CASE("load_config reads a file and reports a missing one") {
    test::TempDir dir;
    std::ofstream(dir.path() / "deploy.toml") << "app = \"hello\"\n";
    auto config = common::load_config(dir.path() / "deploy.toml");
    REQUIRE(config.ok());
    CHECK(config->app == "hello");
    auto missing = common::load_config(dir.path() / "nope.toml");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().kind == common::ErrorKind::config);
    CHECK(missing.error().message.find("no such file") != std::string::npos);
}

TEST_CASE("is_valid_app_name") {
    CHECK(common::is_valid_app_name("hello"));
    CHECK(common::is_valid_app_name("my-app-2"));
    CHECK_FALSE(common::is_valid_app_name(""));
    CHECK_FALSE(common::is_valid_app_name("2app"));
    CHECK_FALSE(common::is_valid_app_name("App"));
    CHECK_FALSE(common::is_valid_app_name("a/b"));
    CHECK_FALSE(common::is_valid_app_name(std::string(64, 'a')));
}

TEST_CASE("parse_config reads a target's agent_command and identity_file") {
    const char* text = R"(app = "hello"
[targets.production]
hosts = ["ssh://deploy@web1"]
agent_command = "/opt/deploy/bin/deploy-agent dial-stdio --socket '/srv/my deploy/agent.sock'"
identity_file = "~/.ssh/deploy_key"
)";
    auto config = common::parse_config(text, "deploy.toml");
    REQUIRE(config.ok());
    const auto& target = config->targets.at("production");
    CHECK(target.agent_command == std::vector<std::string>{"/opt/deploy/bin/deploy-agent",
                                                           "dial-stdio", "--socket",
                                                           "/srv/my deploy/agent.sock"});
    CHECK(target.identity_file == "~/.ssh/deploy_key");

    SUBCASE("both are optional") {
        auto plain = common::parse_config("app = \"a\"\n[targets.x]\nhosts = [\"ssh://h\"]\n",
                                          "deploy.toml");
        REQUIRE(plain.ok());
        CHECK(plain->targets.at("x").agent_command.empty());
        CHECK(plain->targets.at("x").identity_file.empty());
    }
    SUBCASE("an unterminated quote is an error at the value") {
        auto bad = common::parse_config(
            "app = \"a\"\n[targets.x]\nagent_command = \"deploy-agent 'dial-stdio\"\n", "d.toml");
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().kind == common::ErrorKind::config);
        CHECK(bad.error().message.rfind("d.toml:3:17: agent_command: a single quote", 0) == 0);
    }
    SUBCASE("an empty agent_command or identity_file is an error") {
        auto empty =
            common::parse_config("app = \"a\"\n[targets.x]\nagent_command = \"  \"\n", "d.toml");
        REQUIRE_FALSE(empty.ok());
        CHECK(empty.error().message.find("agent_command is empty") != std::string::npos);
        auto key =
            common::parse_config("app = \"a\"\n[targets.x]\nidentity_file = \"\"\n", "d.toml");
        REQUIRE_FALSE(key.ok());
        CHECK(key.error().message.find("identity_file is empty") != std::string::npos);
    }
    SUBCASE("agent_socket: unset, a path, \"\" to turn it off; relative is an error") {
        CHECK_FALSE(target.agent_socket.has_value());
        auto set = common::parse_config(
            "app = \"a\"\n[targets.x]\nagent_socket = \"/srv/deploy/agent.sock\"\n", "d.toml");
        REQUIRE(set.ok());
        CHECK(set->targets.at("x").agent_socket == "/srv/deploy/agent.sock");
        auto off =
            common::parse_config("app = \"a\"\n[targets.x]\nagent_socket = \"\"\n", "d.toml");
        REQUIRE(off.ok());
        CHECK(off->targets.at("x").agent_socket == "");
        auto relative = common::parse_config(
            "app = \"a\"\n[targets.x]\nagent_socket = \"agent.sock\"\n", "d.toml");
        REQUIRE_FALSE(relative.ok());
        CHECK(relative.error().message.rfind(
                  "d.toml:3:16: agent_socket must be an absolute path on the server", 0) == 0);
    }
    SUBCASE("wrong types and misspellings") {
        auto number =
            common::parse_config("app = \"a\"\n[targets.x]\nagent_command = 3\n", "d.toml");
        REQUIRE_FALSE(number.ok());
        CHECK(number.error().message.rfind("d.toml:3:17: agent_command must be a string", 0) == 0);
        auto typo =
            common::parse_config("app = \"a\"\n[targets.x]\nagent_comand = \"x\"\n", "d.toml");
        REQUIRE_FALSE(typo.ok());
        CHECK(typo.error().message.find("did you mean 'agent_command'?") != std::string::npos);
        auto typo2 =
            common::parse_config("app = \"a\"\n[targets.x]\nidentityfile = \"x\"\n", "d.toml");
        REQUIRE_FALSE(typo2.ok());
        CHECK(typo2.error().message.find("did you mean 'identity_file'?") != std::string::npos);
    }
}

TEST_CASE("parse_config reads a target's ca_file and fingerprint") {
    const std::string pin =
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:"
        "23:45:67:89";
    SUBCASE("a fingerprint as openssl prints it is kept in canonical form") {
        auto config =
            common::parse_config("app = \"a\"\n[targets.x]\nhosts = [\"https://h:7443\"]\n"
                                 "fingerprint = \"SHA256 Fingerprint=" +
                                     pin + "\"\n",
                                 "d.toml");
        REQUIRE(config.ok());
        CHECK(config->targets.at("x").fingerprint == "sha256:" + pin);
        CHECK(config->targets.at("x").ca_file.empty());
    }
    SUBCASE("ca_file is kept as written") {
        auto config = common::parse_config("app = \"a\"\n[targets.x]\nca_file = \"certs/ca.pem\"\n",
                                           "d.toml");
        REQUIRE(config.ok());
        CHECK(config->targets.at("x").ca_file == "certs/ca.pem");
        CHECK(config->targets.at("x").fingerprint.empty());
    }
    SUBCASE("a malformed fingerprint is an error at its value") {
        auto bad = common::parse_config(
            "app = \"a\"\n[targets.x]\nfingerprint = \"sha256:AB:CD\"\n", "d.toml");
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().kind == common::ErrorKind::config);
        CHECK(bad.error().message.rfind("d.toml:3:15: fingerprint: 'sha256:AB:CD' is not a "
                                        "SHA-256 fingerprint",
                                        0) == 0);
    }
    SUBCASE("both, or an empty ca_file, are errors") {
        auto both = common::parse_config("app = \"a\"\n[targets.x]\nca_file = \"ca.pem\"\n"
                                         "fingerprint = \"" +
                                             pin + "\"\n",
                                         "d.toml");
        REQUIRE_FALSE(both.ok());
        CHECK(both.error().message.find(
                  "d.toml:4:15: ca_file and fingerprint exclude each other") == 0);
        auto empty = common::parse_config("app = \"a\"\n[targets.x]\nca_file = \"\"\n", "d.toml");
        REQUIRE_FALSE(empty.ok());
        CHECK(empty.error().message.find("ca_file is empty") != std::string::npos);
    }
}

namespace {

// The error of parsing `text`, and the text the caret points at: what follows
// the caret's column in the quoted line (tabs in the indent count as tabs).
struct Pointed {
    std::string message; // the first line
    std::string at;      // the quoted line from the caret on
};

Pointed point(const std::string& text) {
    auto config = common::parse_config(text, "deploy.toml");
    REQUIRE_FALSE(config.ok());
    CHECK(config.error().kind == common::ErrorKind::config);
    const std::string& m = config.error().message;
    Pointed out;
    out.message = m.substr(0, m.find('\n'));
    const auto quoted_start = m.find('\n');
    REQUIRE(quoted_start != std::string::npos);
    const auto caret_start = m.find('\n', quoted_start + 1);
    REQUIRE(caret_start != std::string::npos);
    const std::string quoted = m.substr(quoted_start + 1, caret_start - quoted_start - 1);
    const std::string caret = m.substr(caret_start + 1);
    const auto bar = quoted.find(" | ");
    REQUIRE(bar != std::string::npos);
    REQUIRE(caret.size() > bar + 3);
    CHECK(caret.substr(0, bar + 3) == std::string(bar, ' ') + " | ");
    CHECK(caret.back() == '^');
    // Columns after "| " of the caret, in characters of the quoted line.
    const std::string indent = caret.substr(bar + 3, caret.size() - bar - 4);
    CHECK(indent.find_first_not_of(" \t") == std::string::npos);
    std::string line = quoted.substr(bar + 3);
    std::size_t i = 0;
    for (std::size_t c = 0; c < indent.size() && i < line.size(); ++c) {
        CHECK((indent[c] == '\t') == (line[i] == '\t')); // lines up however wide a tab is
        const auto lead = static_cast<unsigned char>(line[i]);
        i += lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    }
    out.at = i <= line.size() ? line.substr(i) : std::string();
    return out;
}

} // namespace

TEST_CASE("config errors put the caret under the offending text") {
    const std::string app = "app = \"hello\"\n";
    struct Case {
        std::string text;    // after the app line
        std::string message; // how the first line starts
        std::string at;      // how the text under the caret starts
    };
    const Case cases[] = {
        {"[run]\nport = 3000 junk\n", "deploy.toml:3:13: ", "junk"},
        {"app = \"again\"\n", "deploy.toml:2:", "\"again\""},
        {"[run]\nport = \"3000\"\n", "deploy.toml:3:8: run.port must be an integer from 1 to 65535",
         "\"3000\""},
        {"[run]\n\tport = 70000\n", "deploy.toml:3:9: run.port must be an integer", "70000"},
        {"[run]\nhealth = { path = \"/\", timeout = \"soon\" }\n",
         "deploy.toml:3:34: run.health.timeout: invalid duration", "\"soon\""},
        {"[build]\nmemory = \"12 potatoes\"\n", "deploy.toml:3:10: build.memory: invalid size",
         "\"12 potatoes\""},
        {"[targets.production]\nhosts = [\"http://127.0.0.1:1\", 3]\n",
         "deploy.toml:3:32: every item of hosts must be a string", "3]"},
        {"[run]\nhealth = { path = \"healthz\" }\n",
         "deploy.toml:3:19: run.health.path must start with '/'", "\"healthz\""},
        {"[targets]\nproduction = 3\n", "deploy.toml:3:14: targets.production must be a table",
         "3"},
        {"[run]\ncpus = 0\n", "deploy.toml:3:8: run.cpus must be a number of cores greater than 0",
         "0"},
        {"[run]\ncpus = -0.5\n", "deploy.toml:3:8: run.cpus must be a number of cores", "-0.5"},
        {"[run]\ncpus = \"half\"\n", "deploy.toml:3:8: run.cpus must be a number of cores",
         "\"half\""},
        {"[run]\npids = 0\n", "deploy.toml:3:8: run.pids must be an integer from 1 to", "0"},
        {"[run]\npids = 1.5\n", "deploy.toml:3:8: run.pids must be an integer from 1 to", "1.5"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        auto p = point(app + c.text);
        CHECK(p.message.rfind(c.message, 0) == 0);
        CHECK(p.at.rfind(c.at, 0) == 0);
    }
}

TEST_CASE("unknown keys in every table suggest the closest valid one") {
    const std::string app = "app = \"hello\"\n";
    struct Case {
        std::string text, key, table, guess;
    };
    const Case cases[] = {
        {"[biuld]\ncommand = \"x\"\n", "biuld", "the top level", "build"},
        {"[build]\ncomand = \"x\"\n", "comand", "[build]", "command"},
        {"[run]\nprot = 1\n", "prot", "[run]", "port"},
        {"[static]\ndri = \"dist\"\n", "dri", "[static]", "dir"},
        {"[deploy]\nkepp = 3\n", "kepp", "[deploy]", "keep"},
        {"[relase]\ncommand = \"x\"\n", "relase", "the top level", "release"},
        {"[release]\ncomand = \"x\"\n", "comand", "[release]", "command"},
        {"[release]\ntimout = \"1s\"\n", "timout", "[release]", "timeout"},
        {"[run]\nhealth = { path = \"/é\", intervl = \"1s\" }\n", "intervl", "run.health",
         "interval"},
        {"[targets.production]\nhots = [\"http://127.0.0.1:1\"]\n", "hots", "[targets.production]",
         "hosts"},
        {"[targets.staging]\nfingerprnt = \"x\"\n", "fingerprnt", "[targets.staging]",
         "fingerprint"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        auto p = point(app + c.text);
        CHECK(p.message.find(fmt::format("unknown key '{}' in {}; did you mean '{}'?", c.key,
                                         c.table, c.guess)) != std::string::npos);
        CHECK(p.at.rfind(c.key, 0) == 0);
    }
}

TEST_CASE("a missing app names the file, with no line to point at") {
    auto config = common::parse_config("[run]\nport = 1\n", "deploy.toml");
    REQUIRE_FALSE(config.ok());
    CHECK(config.error().message.rfind("deploy.toml: missing required key 'app'", 0) == 0);
    CHECK(config.error().message.find('^') == std::string::npos);
}
TEST_CASE("parse_config: [deploy] idle_stop and idle_stop_workers (scale to zero)") {
    auto off = common::parse_config("app = \"a1\"\n", "deploy.toml");
    REQUIRE(off.ok());
    CHECK(off->deploy.idle_stop.count() == 0);
    CHECK_FALSE(off->deploy.idle_stop_workers);
    auto on = common::parse_config(
        "app = \"a1\"\n[deploy]\nidle_stop = \"15m\"\nidle_stop_workers = true\n", "deploy.toml");
    REQUIRE(on.ok());
    CHECK(on->deploy.idle_stop == std::chrono::minutes(15));
    CHECK(on->deploy.idle_stop_workers);
    auto short_one =
        common::parse_config("app = \"a1\"\n[deploy]\nidle_stop = \"500ms\"\n", "deploy.toml");
    REQUIRE_FALSE(short_one.ok());
    CHECK(short_one.error().message.find(
              "deploy.toml:3:13: deploy.idle_stop must be at least 1s") == 0);
    auto not_bool = common::parse_config("app = \"a1\"\n[deploy]\nidle_stop_workers = \"yes\"\n",
                                         "deploy.toml");
    REQUIRE_FALSE(not_bool.ok());
    CHECK(not_bool.error().message.find("deploy.idle_stop_workers") != std::string::npos);
}

TEST_CASE("parse_config: [deploy] strategy and max_parallel") {
    SUBCASE("defaults: parallel, every host at once") {
        auto config = common::parse_config("app = \"a1\"\n", "deploy.toml");
        REQUIRE(config.ok());
        CHECK(config->deploy.strategy == common::DeployStrategy::parallel);
        CHECK(config->deploy.max_parallel == 0);
    }
    SUBCASE("set") {
        auto config = common::parse_config(
            "app = \"a1\"\n[deploy]\nstrategy = \"rolling\"\nmax_parallel = 2\n", "deploy.toml");
        REQUIRE(config.ok());
        CHECK(config->deploy.strategy == common::DeployStrategy::rolling);
        CHECK(config->deploy.max_parallel == 2);
    }
    SUBCASE("a strategy typo suggests the closest") {
        auto config =
            common::parse_config("app = \"a1\"\n[deploy]\nstrategy = \"rollin\"\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.rfind("deploy.toml:3:12: deploy.strategy must be "
                                           "\"parallel\" or \"rolling\", not \"rollin\"; did "
                                           "you mean \"rolling\"?",
                                           0) == 0);
    }
    SUBCASE("max_parallel below 1") {
        auto config =
            common::parse_config("app = \"a1\"\n[deploy]\nmax_parallel = 0\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.find("deploy.toml:3:16: deploy.max_parallel") == 0);
    }
    SUBCASE("a key typo suggests max_parallel") {
        auto config =
            common::parse_config("app = \"a1\"\n[deploy]\nmax_paralel = 2\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.find("did you mean 'max_parallel'?") != std::string::npos);
    }
}

TEST_CASE("parse_config: [release] command and timeout") {
    SUBCASE("absent: no release command, timeout 10m") {
        auto config = common::parse_config("app = \"a1\"\n", "deploy.toml");
        REQUIRE(config.ok());
        CHECK(config->release.command.empty());
        CHECK(config->release.timeout == 10min);
    }
    SUBCASE("command and timeout") {
        auto config = common::parse_config(
            "app = \"a1\"\n[release]\ncommand = \"./manage.py migrate\"\ntimeout = \"90s\"\n",
            "deploy.toml");
        REQUIRE(config.ok());
        CHECK(config->release.command == "./manage.py migrate");
        CHECK(config->release.timeout == 90s);
    }
    SUBCASE("the timeout defaults to 10m") {
        auto config =
            common::parse_config("app = \"a1\"\n[release]\ncommand = \"true\"\n", "deploy.toml");
        REQUIRE(config.ok());
        CHECK(config->release.timeout == 10min);
    }
    SUBCASE("an empty command is an error") {
        auto config =
            common::parse_config("app = \"a1\"\n[release]\ncommand = \" \"\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.rfind("deploy.toml:3:11: release.command must not be empty",
                                           0) == 0);
    }
    SUBCASE("a wrong type names the key") {
        auto config = common::parse_config("app = \"a1\"\n[release]\ncommand = 3\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.find("release.command") != std::string::npos);
    }
    SUBCASE("an invalid or zero timeout") {
        auto bad =
            common::parse_config("app = \"a1\"\n[release]\ntimeout = \"soon\"\n", "deploy.toml");
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().message.rfind("deploy.toml:3:11: release.timeout: invalid duration", 0) ==
              0);
        auto zero =
            common::parse_config("app = \"a1\"\n[release]\ntimeout = \"0s\"\n", "deploy.toml");
        REQUIRE_FALSE(zero.ok());
        CHECK(zero.error().message.find("release.timeout must be longer than 0s") !=
              std::string::npos);
    }
}

TEST_CASE("run.cpus and run.pids: fractions or whole cores, a process count") {
    auto fraction =
        common::parse_config("app = \"a\"\n[run]\ncpus = 0.5\npids = 64\n", "deploy.toml");
    REQUIRE(fraction);
    CHECK(fraction->run.cpus == doctest::Approx(0.5));
    CHECK(fraction->run.pids == 64);
    auto whole = common::parse_config("app = \"a\"\n[run]\ncpus = 2\n", "deploy.toml");
    REQUIRE(whole);
    CHECK(whole->run.cpus == doctest::Approx(2.0));
    CHECK(whole->run.pids == 0);
    auto none = common::parse_config("app = \"a\"\n", "deploy.toml");
    REQUIRE(none);
    CHECK(none->run.cpus == 0);
    CHECK(none->run.pids == 0);
}

TEST_CASE("[deploy] standby: 10 minutes by default, a duration, 0s turns it off") {
    using namespace std::chrono_literals;
    auto plain = common::parse_config("app = \"hello\"\n[run]\ncommand = \"x\"\n", "d.toml");
    REQUIRE(plain.ok());
    CHECK(plain->deploy.standby == 10min);
    auto off = common::parse_config(
        "app = \"hello\"\n[run]\ncommand = \"x\"\n[deploy]\nstandby = \"0s\"\n", "d.toml");
    REQUIRE(off.ok());
    CHECK(off->deploy.standby == 0s);
    auto bad = common::parse_config(
        "app = \"hello\"\n[run]\ncommand = \"x\"\n[deploy]\nstandby = \"soon\"\n", "d.toml");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message.find("deploy.standby") != std::string::npos);
}

TEST_CASE("[processes]: web is run.command, the others are kept by name") {
    auto config =
        common::parse_config("app = \"hello\"\n[processes]\nweb = \"./server\"\nworker = "
                             "\"bin/jobs\"\nclock = \"bin/clock\"\n[deploy]\n"
                             "stop_timeout = \"3s\"\n[run]\nhealth = { grace = \"2s\" }\n",
                             "deploy.toml");
    REQUIRE(config.ok());
    CHECK(config->run.command == "./server");
    CHECK(config->has_web());
    CHECK(config->processes ==
          std::map<std::string, std::string>{{"clock", "bin/clock"}, {"worker", "bin/jobs"}});
    CHECK(config->deploy.stop_timeout == 3s);
    CHECK(config->run.health.grace == 2s);

    SUBCASE("defaults: no [processes] is the web process alone") {
        auto plain = common::parse_config("app = \"hello\"\n[run]\ncommand = \"x\"\n", "d.toml");
        REQUIRE(plain.ok());
        CHECK(plain->has_web());
        CHECK(plain->processes.empty());
        CHECK(plain->deploy.stop_timeout == 30s);
        CHECK(plain->run.health.grace == 5s);
    }
    SUBCASE("without web: a worker-only app") {
        auto only =
            common::parse_config("app = \"hello\"\n[processes]\nworker = \"w\"\n", "d.toml");
        REQUIRE(only.ok());
        CHECK_FALSE(only->has_web());
        CHECK(only->processes.size() == 1);
    }
    SUBCASE("errors") {
        auto error_of = [](const std::string& text) {
            auto parsed = common::parse_config("app = \"hello\"\n" + text, "d.toml");
            REQUIRE_FALSE(parsed.ok());
            return parsed.error().message;
        };
        CHECK(error_of("[run]\ncommand = \"a\"\n[processes]\nweb = \"b\"\n")
                  .find("d.toml:5:7: processes.web and run.command both give the web "
                        "process's command; keep one") == 0);
        CHECK(error_of("[run]\ncommand = \"a\"\n[processes]\nworker = \"b\"\n")
                  .find("run.command is the web process, but [processes] has no web") !=
              std::string::npos);
        CHECK(error_of("[processes]\nWorker = \"b\"\n").find("must be 1-30 lower-case") !=
              std::string::npos);
        CHECK(error_of("[processes]\nrelease = \"b\"\n").find("\"release\" is reserved") !=
              std::string::npos);
        CHECK(
            error_of("[processes]\nworker = \"  \"\n").find("processes.worker must not be empty") !=
            std::string::npos);
        CHECK(error_of("[processes]\nworker = 3\n").find("processes.worker must be a string") !=
              std::string::npos);
        CHECK(error_of("[processes]\n").find("[processes] is empty") != std::string::npos);
        CHECK(error_of("[static]\ndir = \"public\"\n[processes]\nw = \"x\"\n")
                  .find("[processes] and [static] exclude each other") != std::string::npos);
        CHECK(error_of("[run]\nhealth = { grace = \"0s\" }\n")
                  .find("run.health.grace must be "
                        "longer than 0s") != std::string::npos);
    }
}

TEST_CASE("[proxy]: body limit and timeouts, with their defaults") {
    auto plain = common::parse_config("app = \"hello\"\n", "deploy.toml");
    REQUIRE(plain.ok());
    CHECK(plain->proxy.max_body == 100ull * 1024 * 1024);
    CHECK(plain->proxy.connect_timeout == 5s);
    CHECK(plain->proxy.read_timeout == 60s);
    CHECK(plain->proxy.websocket_idle == 3600s);
    auto set = common::parse_config("app = \"hello\"\n[proxy]\nmax_body = \"1g\"\n"
                                    "connect_timeout = \"2s\"\nread_timeout = \"5m\"\n"
                                    "websocket_idle = \"30s\"\n",
                                    "deploy.toml");
    REQUIRE(set.ok());
    CHECK(set->proxy.max_body == 1024ull * 1024 * 1024);
    CHECK(set->proxy.connect_timeout == 2s);
    CHECK(set->proxy.read_timeout == 300s);
    CHECK(set->proxy.websocket_idle == 30s);
    auto unlimited = common::parse_config("app = \"a\"\n[proxy]\nmax_body = \"0\"\n", "d.toml");
    REQUIRE(unlimited.ok());
    CHECK(unlimited->proxy.max_body == 0);
    auto error_of = [](const std::string& text) {
        auto config = common::parse_config("app = \"a\"\n[proxy]\n" + text, "d.toml");
        REQUIRE_FALSE(config.ok());
        return config.error().message;
    };
    CHECK(error_of("read_timeout = \"0s\"\n").find("proxy.read_timeout must be above 0") !=
          std::string::npos);
    CHECK(error_of("max_body = \"lots\"\n").find("proxy.max_body: invalid size") !=
          std::string::npos);
    CHECK(error_of("max_bdoy = \"1m\"\n").find("max_body") != std::string::npos);
}

TEST_CASE("[logs] max_size and keep, with their defaults and bounds") {
    auto defaults = common::parse_config("app = \"a1\"\n", "deploy.toml");
    REQUIRE(defaults.ok());
    CHECK(defaults->logs.max_size == 10ull * 1024 * 1024);
    CHECK(defaults->logs.keep == 5);
    auto set =
        common::parse_config("app = \"a1\"\n[logs]\nmax_size = \"1m\"\nkeep = 2\n", "deploy.toml");
    REQUIRE(set.ok());
    CHECK(set->logs.max_size == 1024 * 1024);
    CHECK(set->logs.keep == 2);
    auto off = common::parse_config("app = \"a1\"\n[logs]\nmax_size = \"0\"\n", "deploy.toml");
    REQUIRE(off.ok());
    CHECK(off->logs.max_size == 0);
    CHECK(defaults->logs.max_age.count() == 0);
    CHECK(defaults->logs.drain.empty());
    CHECK(defaults->logs.drain_queue == 64ull * 1024 * 1024);
    auto aged = common::parse_config(
        "app = \"a1\"\n[logs]\nmax_age = \"7d\"\ndrain = \"syslog+tcp://logs.internal:1514\"\n"
        "drain_queue = \"1m\"\n",
        "deploy.toml");
    REQUIRE(aged.ok());
    CHECK(aged->logs.max_age == std::chrono::hours(24 * 7));
    CHECK(aged->logs.drain == "syslog+tcp://logs.internal:1514");
    CHECK(aged->logs.drain_queue == 1024 * 1024);
    for (const char* bad : {"[logs]\nmax_size = \"1k\"\n", "[logs]\nkeep = 101\n",
                            "[logs]\nmax_age = \"30s\"\n", "[logs]\ndrain = \"http://logs:514\"\n",
                            "[logs]\ndrain_queue = \"1k\"\n", "[logs]\nmax_agee = \"1d\"\n"}) {
        INFO(std::string(bad));
        auto parsed = common::parse_config(std::string("app = \"a1\"\n") + bad, "deploy.toml");
        REQUIRE_FALSE(parsed.ok());
        CHECK(parsed.error().message.find("deploy.toml:") == 0);
    }
}

TEST_CASE("[logs] drain URLs: syslog over TCP or TLS, a host, a port, a CA for TLS") {
    auto tcp = common::parse_drain_url("syslog+tcp://logs.internal");
    REQUIRE(tcp.ok());
    CHECK_FALSE(tcp->tls);
    CHECK(tcp->host == "logs.internal");
    CHECK(tcp->port == 514);
    auto tls = common::parse_drain_url("syslog+tls://10.0.0.5:7514?ca=/etc/ssl/logs-ca.pem");
    REQUIRE(tls.ok());
    CHECK(tls->tls);
    CHECK(tls->host == "10.0.0.5");
    CHECK(tls->port == 7514);
    CHECK(tls->ca_file == "/etc/ssl/logs-ca.pem");
    auto v6 = common::parse_drain_url("syslog+tls://[::1]");
    REQUIRE(v6.ok());
    CHECK(v6->host == "::1");
    CHECK(v6->port == 6514);
    for (const char* bad :
         {"", "syslog://logs:514", "syslog+udp://logs:514", "syslog+tcp://", "syslog+tcp://:514",
          "syslog+tcp://logs:0", "syslog+tcp://logs:65536", "syslog+tcp://logs:http",
          "syslog+tcp://logs?ca=/x.pem", "syslog+tls://logs?ca=relative.pem",
          "syslog+tls://logs?insecure=1", "syslog+tcp://user@logs", "syslog+tls://[::1"}) {
        INFO(bad);
        auto parsed = common::parse_drain_url(bad);
        REQUIRE_FALSE(parsed.ok());
        CHECK(parsed.error().message.find("expected syslog+tcp://HOST[:PORT]") !=
              std::string::npos);
    }
}

TEST_CASE("[git] branch: the deploy branch of git push, checked as git checks it") {
    auto config = common::parse_config("app = \"hello\"\n", "deploy.toml");
    REQUIRE(config);
    CHECK(config->git.branch == "main");
    config =
        common::parse_config("app = \"hello\"\n[git]\nbranch = \"release/2\"\n", "deploy.toml");
    REQUIRE(config);
    CHECK(config->git.branch == "release/2");
    for (const char* bad : {"refs/heads/main", "a..b", "-x", "a b", "x.lock", "a/.b", "a//b", "",
                            "@", "x@{1}", "a~1", "a:b"}) {
        auto refused = common::parse_config(
            fmt::format("app = \"hello\"\n[git]\nbranch = \"{}\"\n", bad), "deploy.toml");
        CHECK_MESSAGE(!refused, bad);
        if (!refused)
            CHECK(refused.error().message.find("git.branch") != std::string::npos);
    }
    auto typo = common::parse_config("app = \"hello\"\n[git]\nbrnch = \"main\"\n", "deploy.toml");
    REQUIRE_FALSE(typo);
    CHECK(typo.error().message.find("branch") != std::string::npos);
    CHECK(common::is_valid_branch_name("feature/x-1"));
    CHECK_FALSE(common::is_valid_branch_name("feature/"));
}

TEST_CASE("[git] url and token: where a webhook fetches from, and the secret it sends") {
    const auto parse = [](const std::string& git) {
        return common::parse_config("app = \"hello\"\n[git]\n" + git, "deploy.toml");
    };
    auto ok = parse("url = \"https://github.com/acme/hello.git\"\ntoken = \"REPO_TOKEN\"\n");
    REQUIRE(ok);
    CHECK(ok->git.url == "https://github.com/acme/hello.git");
    CHECK(ok->git.token == "REPO_TOKEN");
    CHECK(parse("url = \"git://127.0.0.1:9418/hello.git\"\n"));
    CHECK(parse("url = \"file:///srv/git/hello.git\"\n"));
    CHECK(parse("url = \"http://127.0.0.1:8080/hello.git\"\ntoken = \"T\"\n"));
    const auto refused = [&](const std::string& git) {
        auto config = parse(git);
        return config ? std::string() : config.error().message;
    };
    CHECK(refused("url = \"ftp://example.com/acme/hello.git\"\n").find("https://") !=
          std::string::npos);
    CHECK(refused("url = \"https://me:secret@github.com/acme/hello.git\"\n").find("password") !=
          std::string::npos);
    CHECK(refused("url = \"http://example.com/hello.git\"\ntoken = \"T\"\n")
              .find("only over https://") != std::string::npos);
    // Loopback is the URL's host, not a prefix of it: these reach other machines.
    for (const char* host : {"localhost.evil.example", "127.0.0.1.evil.example",
                             "127.0.0.1@evil.example", "[::1].evil.example"})
        CHECK_MESSAGE(refused(fmt::format("url = \"http://{}/hello.git\"\ntoken = \"T\"\n", host))
                              .find("only over https://") != std::string::npos,
                      std::string(host));
    for (const char* host :
         {"localhost", "localhost:3000", "127.0.0.2:8080", "[::1]:8080", "git@127.0.0.1"})
        CHECK_MESSAGE(parse(fmt::format("url = \"http://{}/hello.git\"\ntoken = \"T\"\n", host)),
                      std::string(host));
    CHECK(refused("url = \"https://example.com/h.git\"\ntoken = \"not a name\"\n")
              .find("git.token names a secret") != std::string::npos);
    CHECK(parse("url = \"https://git@github.com/acme/hello.git\"\n")); // a user, no password
}

TEST_CASE("[preview]: previews per pull request, off unless the table is there") {
    auto none = common::parse_config("app = \"hello\"\n", "deploy.toml");
    REQUIRE(none);
    CHECK_FALSE(none->preview);
    auto empty = common::parse_config("app = \"hello\"\n[preview]\n", "deploy.toml");
    REQUIRE(empty);
    REQUIRE(empty->preview);
    CHECK(empty->preview->max == 10);
    CHECK_FALSE(empty->preview->forks);
    CHECK(empty->preview->secrets.empty());
    auto full = common::parse_config("app = \"hello\"\n[preview]\nmax = 3\nforks = true\n"
                                     "secrets = [\"API_KEY\"]\n[preview.env]\nMODE = \"test\"\n"
                                     "DEBUG = true\n",
                                     "deploy.toml");
    REQUIRE(full);
    CHECK(full->preview->max == 3);
    CHECK(full->preview->forks);
    CHECK(full->preview->secrets == std::vector<std::string>{"API_KEY"});
    CHECK(full->preview->env.at("MODE") == "test");
    CHECK(full->preview->env.at("DEBUG") == "true");
    const auto refused = [](const std::string& preview) {
        auto config = common::parse_config("app = \"hello\"\n[preview]\n" + preview, "deploy.toml");
        return config ? std::string() : config.error().message;
    };
    CHECK(refused("max = -1\n").find("preview.max") != std::string::npos);
    CHECK(refused("secrets = [\"not a name\"]\n").find("preview.secrets") != std::string::npos);
    CHECK(refused("maxx = 2\n").find("max") != std::string::npos);
    CHECK(refused("env = { A = [1] }\n").find("env.A") != std::string::npos);
}

TEST_CASE("preview_config_text: the pull request's deploy.toml made the preview's") {
    const std::string text = "app = \"shop\"\n"
                             "[run]\ncommand = \"./serve\"\n"
                             "[env]\nMODE = \"live\"\nKEEP = \"yes\"\n"
                             "[preview]\nmax = 2\n[preview.env]\nMODE = \"test\"\n"
                             "[targets.web]\nhosts = [\"ssh://web1\"]\n"
                             "domains = [\"example.com\", \"shop.example.org\"]\n";
    auto made = common::preview_config_text(text, "shop", 12);
    REQUIRE(made);
    auto config = common::parse_config(*made, "deploy.toml");
    REQUIRE(config);
    CHECK(config->app == "shop-pr-12");
    CHECK(config->run.command == "./serve");
    CHECK(config->env.at("MODE") == "test"); // [preview.env] over [env]
    CHECK(config->env.at("KEEP") == "yes");
    CHECK_FALSE(config->preview); // a preview makes no previews
    CHECK(config->targets.at("web").domains ==
          std::vector<std::string>{"pr-12.shop.example.com", "pr-12.shop.shop.example.org"});
    CHECK(config->targets.at("web").hosts == std::vector<std::string>{"ssh://web1"});
    // Without [env] in the text, [preview.env] makes one.
    auto bare =
        common::preview_config_text("app = \"shop\"\n[preview.env]\nMODE = \"test\"\n", "shop", 1);
    REQUIRE(bare);
    CHECK(common::parse_config(*bare, "deploy.toml")->env.at("MODE") == "test");
    // Another app's deploy.toml, a broken one, a name too long: errors that say so.
    auto other = common::preview_config_text("app = \"other\"\n", "shop", 1);
    REQUIRE_FALSE(other);
    CHECK(other.error().message.find("app = \"other\"") != std::string::npos);
    CHECK_FALSE(common::preview_config_text("app = \"shop\"\n[run\n", "shop", 1));
    const std::string long_name(60, 'a');
    auto too_long = common::preview_config_text("app = \"" + long_name + "\"\n", long_name, 1234);
    REQUIRE_FALSE(too_long);
    CHECK(too_long.error().message.find("63 characters") != std::string::npos);
    CHECK(*common::preview_app_name("shop", 7) == "shop-pr-7");
}

TEST_CASE("[git] url over ssh: ssh:// and USER@HOST:PATH, fetched with the deploy key") {
    CHECK(common::is_ssh_git_url("ssh://git@github.com/acme/hello.git"));
    CHECK(common::is_ssh_git_url("ssh://git@git.example.com:2222/acme/hello.git"));
    CHECK(common::is_ssh_git_url("git@github.com:acme/hello.git"));
    CHECK(common::is_ssh_git_url("github.com:acme/hello.git"));
    CHECK_FALSE(common::is_ssh_git_url("https://github.com/acme/hello.git"));
    CHECK_FALSE(common::is_ssh_git_url("file:///srv/git/hello.git"));
    CHECK_FALSE(common::is_ssh_git_url("/srv/git/hello.git"));
    CHECK_FALSE(common::is_ssh_git_url("./a:b"));
    CHECK_FALSE(common::is_ssh_git_url("ssh://"));
    const auto parse = [](const std::string& git) {
        return common::parse_config("app = \"hello\"\n[git]\n" + git, "deploy.toml");
    };
    CHECK(parse("url = \"git@github.com:acme/hello.git\"\n"));
    CHECK(parse("url = \"ssh://git@github.com/acme/hello.git\"\n"));
    auto token = parse("url = \"git@github.com:acme/hello.git\"\ntoken = \"T\"\n");
    REQUIRE_FALSE(token);
    CHECK(token.error().message.find("deploy key") != std::string::npos);
}

TEST_CASE("parse_config reads [build] cache and cache_max") {
    SUBCASE("defaults: no paths, 2G") {
        auto config = common::parse_config("app = \"a1\"\n", "deploy.toml");
        REQUIRE(config.ok());
        CHECK(config->build.cache.empty());
        CHECK(config->build.cache_max == 2ULL << 30);
    }
    SUBCASE("paths, a trailing slash dropped, and a size") {
        auto config = common::parse_config("app = \"a1\"\n[build]\ncache = [\"node_modules/\", "
                                           "\"vendor/bundle\", \".venv\"]\ncache_max = \"512m\"\n",
                                           "deploy.toml");
        REQUIRE(config.ok());
        CHECK(config->build.cache ==
              std::vector<std::string>{"node_modules", "vendor/bundle", ".venv"});
        CHECK(config->build.cache_max == 512ULL << 20);
    }
    SUBCASE("a path outside the app, absolute, twice or inside another is refused") {
        for (const auto& [paths, says] : std::vector<std::pair<std::string, std::string>>{
                 {"[\"../up\"]", "build.cache: \"../up\" is not a relative path inside the app"},
                 {"[\"/var/cache\"]", "\"/var/cache\" is not a relative path inside the app"},
                 {"[\".\"]", "\".\" is not a relative path inside the app"},
                 {"[\"a/../../b\"]", "is not a relative path inside the app"},
                 {"[\"node_modules\", \"node_modules/\"]", "lists \"node_modules\" twice"},
                 {"[\"target\", \"target/debug\"]",
                  "lists \"target/debug\" inside \"target\": list one of them"}}) {
            CAPTURE(paths);
            auto config = common::parse_config("app = \"a1\"\n[build]\ncache = " + paths + "\n",
                                               "deploy.toml");
            REQUIRE_FALSE(config.ok());
            CHECK(config.error().kind == common::ErrorKind::config);
            CHECK(config.error().message.rfind("deploy.toml:3:9: ", 0) == 0);
            CHECK(config.error().message.find(says) != std::string::npos);
        }
    }
    SUBCASE("cache_max must be a size") {
        auto config =
            common::parse_config("app = \"a1\"\n[build]\ncache_max = \"lots\"\n", "deploy.toml");
        REQUIRE_FALSE(config.ok());
        CHECK(config.error().message.find("build.cache_max") != std::string::npos);
    }
}
