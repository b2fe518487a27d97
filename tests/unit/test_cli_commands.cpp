// deployctl's command table: the commands it adds and their order in --help, and that
// the parse runs the handler of the command it chose.

#include <CLI/CLI.hpp>
#include <cli/app.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <common/version.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <tests/unit/cli_run.hpp>
#include <tests/unit/fixtures.hpp>
#include <tests/unit/temp_dir.hpp>
#include <unistd.h>
#include <vector>

using nlohmann::json;

namespace {

// deployctl's commands as `deployctl --help` has always listed them; __complete is hidden.
const std::string k_help_order =
    "deploy status releases ps scale logs run rollback canary rm apps stop "
    "start restart maintenance pause resume destroy agent env "
    "cron build-cache hooks previews certs "
    "token login audit init completion version";

std::string join(const std::vector<std::string>& words, const char* separator) {
    std::string text;
    for (const auto& word : words)
        text += (text.empty() ? "" : separator) + word;
    return text;
}

// The names of `apps`, separated by spaces.
std::string names_of(const std::vector<CLI::App*>& apps) {
    std::vector<std::string> names;
    for (const auto* app : apps)
        names.push_back(app->get_name());
    return join(names, " ");
}

// What `deployctl ARGS...` prints on stdout (run in process).
std::string stdout_of(std::vector<std::string> args) {
    args.insert(args.begin(), "deployctl");
    std::vector<char*> argv;
    for (auto& arg : args)
        argv.push_back(arg.data());
    std::ostringstream captured;
    auto* saved = std::cout.rdbuf(captured.rdbuf());
    cli::run(static_cast<int>(argv.size()), argv.data());
    std::cout.rdbuf(saved);
    return captured.str();
}

// The names in the "Subcommands:" part of a --help text, in order, separated by spaces.
std::string help_commands(const std::string& help) {
    std::vector<std::string> names;
    std::istringstream lines(help.substr(help.find("\nSubcommands:\n") + 14));
    std::string line;
    while (std::getline(lines, line) && line.starts_with("  "))
        names.push_back(line.substr(2, line.find(' ', 2) - 2));
    return join(names, " ");
}

// An agent that answers every request (GET, POST, PUT, DELETE, STREAM: an NDJSON stream of
// no lines) with what `answer` returns for its method and path.
using Answer =
    std::function<common::Result<json>(const std::string& method, std::string_view path)>;
class FakeAgent final : public cli::transport::Client {
  public:
    FakeAgent(std::string url, Answer answer)
        : m_url(std::move(url)), m_answer(std::move(answer)) {}
    const std::string& url() const override { return m_url; }
    common::Result<json> get_json(std::string_view path) override { return m_answer("GET", path); }
    common::Result<json> post_json(std::string_view path, const json&) override {
        return m_answer("POST", path);
    }
    common::Result<json> put_blob(std::string_view path, std::string_view) override {
        return m_answer("PUT", path);
    }
    common::Result<json> remove(std::string_view path) override { return m_answer("DELETE", path); }
    common::Status stream_ndjson(std::string_view path,
                                 const cli::transport::LineHandler&) override {
        if (auto answered = m_answer("STREAM", path); !answered)
            return answered.error();
        return {};
    }

  private:
    std::string m_url;
    Answer m_answer;
};

// Connects every host to a FakeAgent answering with `answer`.
cli::Connect connect_to(Answer answer) {
    return [answer](const cli::HostUrl& url, const cli::SshSettings&,
                    const cli::transport::TlsOptions&)
               -> common::Result<std::unique_ptr<cli::transport::Client>> {
        return std::unique_ptr<cli::transport::Client>(new FakeAgent(url.base_url, answer));
    };
}

} // namespace

TEST_CASE("agent version: deployctl's version, each agent's, a warning for each that differs") {
    const std::string mine(common::version());
    test::CliRun cli;
    cli.ctx.global.hosts = {"http://127.0.0.1:7070", "http://127.0.0.1:7071"};
    // Each agent's /v1/health says which deploy-agent it runs; nothing else is asked.
    cli.ctx.connect = [&](const cli::HostUrl& url, const cli::SshSettings& ssh,
                          const cli::transport::TlsOptions& tls) {
        auto version = url.base_url.ends_with(":7071") ? std::string("0.0.9") : mine;
        return connect_to([version](const std::string& method,
                                    std::string_view path) -> common::Result<json> {
            if (method != "GET")
                return common::make_error(common::ErrorKind::usage, "not asked of agent version");
            if (path != "/v1/health")
                return common::make_error(common::ErrorKind::not_found, std::string(path));
            return json{{"ok", true}, {"version", version}};
        })(url, ssh, tls);
    };
    REQUIRE(cli.run({"agent", "version"}).ok());
    std::vector<json> events;
    std::istringstream lines(cli.out.str());
    for (std::string line; std::getline(lines, line);)
        events.push_back(json::parse(line));
    REQUIRE(events.size() == 3);
    CHECK(events[0] == json{{"event", "version"}, {"version", mine}, {"v", 1}});
    std::map<std::string, std::string> by_host;
    for (std::size_t i = 1; i < events.size(); ++i) {
        CHECK(events[i]["event"] == "version");
        by_host[events[i]["host"]] = events[i]["version"];
    }
    CHECK(by_host == std::map<std::string, std::string>{{"http://127.0.0.1:7070", mine},
                                                        {"http://127.0.0.1:7071", "0.0.9"}});
    CHECK(cli.err.str() == "warning: http://127.0.0.1:7071 runs deploy-agent 0.0.9, deployctl is " +
                               mine + ": upgrade one of them to match\n");
}

TEST_CASE("the command table adds every command, in the order of deployctl --help") {
    CLI::App app;
    cli::Context ctx;
    std::size_t count = 0;
    for (auto add : cli::commands::k_commands) {
        add(app, ctx);
        auto added = app.get_subcommands([](CLI::App*) { return true; }).size();
        CHECK_MESSAGE(added > count, "entry " << count << " of k_commands adds no command");
        count = added;
    }
    auto all = app.get_subcommands([](CLI::App*) { return true; });
    auto visible = app.get_subcommands([](CLI::App* sub) { return !sub->get_group().empty(); });
    CHECK(names_of(visible) == k_help_order);
    CHECK(names_of(all) == // with the hidden __complete, added by completion
          "deploy status releases ps scale logs run rollback canary rm apps stop start restart "
          "maintenance pause resume destroy "
          "agent "
          "env "
          "cron build-cache hooks previews certs token "
          "login audit init completion __complete version");

    SUBCASE("deployctl --help lists them in that order") {
        CHECK(help_commands(stdout_of({"--help"})) == k_help_order);
    }
}

TEST_CASE("the parse runs the handler of the command it chose") {
    SUBCASE("version, in process and through cli::run") {
        test::CliRun cli;
        REQUIRE(cli.run({"version"}).ok());
        auto event = json::parse(cli.out.str());
        CHECK(event["event"] == "version");
        CHECK(event["version"] == common::version());
        CHECK(stdout_of({"version"}) == "deployctl " + std::string(common::version()) + "\n");
    }

    SUBCASE("each command sends its own requests") {
        // The arguments of a command, and the requests the agent gets.
        const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
            {{"status"}, "GET /v1/apps/hello"},
            {{"releases"}, "GET /v1/apps/hello/releases"},
            {{"logs", "v2"}, "STREAM /v1/apps/hello/logs?release=v2"},
            {{"rollback", "v2"}, "POST /v1/apps/hello/rollback, GET /v1/apps/hello"},
            {{"rm", "v2"}, "DELETE /v1/apps/hello/releases/v2"},
            {{"apps"}, "GET /v1/apps"},
            {{"stop"}, "POST /v1/apps/hello/stop"},
            {{"start"}, "POST /v1/apps/hello/start"},
            {{"restart"}, "POST /v1/apps/hello/restart"},
            {{"destroy", "hello", "--yes"}, "DELETE /v1/apps/hello"},
            {{"agent", "ping"}, "GET /v1/health"},
            {{"agent", "info"}, "GET /v1/info"},
            {{"agent", "version"}, "GET /v1/health"},
            {{"env", "ls"}, "GET /v1/apps/hello/env"},
            {{"env", "set", "A=1"}, "POST /v1/apps/hello/env"},
            {{"cron", "ls"}, "GET /v1/apps/hello/cron"},
            {{"cron", "run", "cleanup"}, "POST /v1/apps/hello/cron/cleanup/runs"},
            {{"hooks", "secret"}, "POST /v1/apps/hello/hooks/secret"},
            {{"hooks", "secret", "--rotate"}, "POST /v1/apps/hello/hooks/secret"},
            {{"hooks", "ls"}, "GET /v1/apps/hello/hooks/deliveries"},
            {{"hooks", "key", "--rotate", "--forget-hosts"}, "POST /v1/apps/hello/hooks/key"},
            {{"previews"}, "GET /v1/apps/hello/previews"},
            {{"certs"}, "GET /v1/certificates"},
            {{"logs", "--process", "cron.cleanup"},
             "STREAM /v1/apps/hello/logs?process=cron.cleanup"},
            {{"token", "create", "--scope", "read"}, "POST /v1/tokens"},
            {{"token", "ls"}, "GET /v1/tokens"},
            {{"token", "revoke", "3f2a"}, "DELETE /v1/tokens/3f2a"},
            {{"audit", "--limit", "5"}, "GET /v1/audit?limit=5&app=hello"},
        };
        for (const auto& [args, expected] : cases) {
            test::CliRun cli;
            cli.ctx.global.app = "hello";
            cli.ctx.global.hosts = {"http://127.0.0.1:7070"};
            std::vector<std::string> requests;
            // Records the requests it gets and answers each with `{}` (or no lines).
            cli.ctx.connect =
                connect_to([&requests](const std::string& method,
                                       std::string_view path) -> common::Result<json> {
                    requests.push_back(method + " " + std::string(path));
                    return json::object();
                });
            REQUIRE(cli.run(args).ok());
            CHECK_MESSAGE(join(requests, ", ") == expected, join(args, " "));
        }
    }

    SUBCASE("completion describes the whole command tree it is part of") {
        auto script = stdout_of({"completion", "bash"});
        CHECK(script.starts_with("# bash completion"));
        CHECK(script.find("['deployctl']='" + k_help_order + "'") != std::string::npos);
    }

    SUBCASE("a usage error is thrown by the parse, and no handler is chosen") {
        test::CliRun cli;
        CHECK_THROWS_AS(cli.run({"rm"}), CLI::ParseError);
        CHECK_FALSE(cli.ctx.command);
    }
}

TEST_CASE("logs without a PRODUCTION release says how to name one on the command line") {
    test::CliRun cli;
    cli.ctx.global.app = "hello";
    cli.ctx.global.hosts = {"http://127.0.0.1:7070"};
    // The app has no PRODUCTION release: logs without a release is not_found.
    cli.ctx.connect = connect_to([](const std::string&, std::string_view) -> common::Result<json> {
        return common::make_error(common::ErrorKind::not_found,
                                  "app 'hello' has no PRODUCTION release; name a release");
    });
    auto st = cli.run({"logs"});
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().kind == common::ErrorKind::not_found);
    const auto said = st.error().message + cli.out.str();
    CHECK(said.find("no PRODUCTION release; name a release with `deployctl logs RELEASE`") !=
          std::string::npos);
    CHECK(said.find("?release=") == std::string::npos);
}

TEST_CASE("cron run goes to the target's first host only; logs --process is checked") {
    test::CliRun cli;
    cli.ctx.global.app = "hello";
    cli.ctx.global.hosts = {"http://127.0.0.1:7070", "http://127.0.0.1:7071"};
    std::vector<std::string> requests;
    cli.ctx.connect = connect_to(
        [&requests](const std::string& method, std::string_view path) -> common::Result<json> {
            requests.push_back(method + " " + std::string(path));
            return json::object();
        });
    REQUIRE(cli.run({"cron", "run", "cleanup"}).ok());
    CHECK(requests == std::vector<std::string>{"POST /v1/apps/hello/cron/cleanup/runs"});
    requests.clear();
    REQUIRE(cli.run({"cron", "ls"}).ok());
    CHECK(requests.size() == 2); // every host

    test::CliRun both;
    both.ctx.global.app = "hello";
    both.ctx.global.hosts = {"http://127.0.0.1:7070"};
    auto st = both.run({"logs", "v2", "--process", "cron.cleanup"});
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().kind == common::ErrorKind::usage);
    test::CliRun bad;
    bad.ctx.global.app = "hello";
    bad.ctx.global.hosts = {"http://127.0.0.1:7070"};
    st = bad.run({"logs", "--process", "cron.x&y=1"});
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().kind == common::ErrorKind::usage);
}

TEST_CASE("destroy asks for the app's name; without a terminal it needs --yes") {
    std::vector<std::string> requests;
    auto agent = connect_to(
        [&requests](const std::string& method, std::string_view path) -> common::Result<json> {
            requests.push_back(method + " " + std::string(path));
            return json::object();
        });
    SUBCASE("-a naming another app is a usage error, nothing sent") {
        test::CliRun cli;
        cli.ctx.global.app = "web";
        cli.ctx.global.hosts = {"http://127.0.0.1:7070"};
        cli.ctx.connect = agent;
        auto st = cli.run({"destroy", "hello", "--yes"});
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().kind == common::ErrorKind::usage);
        CHECK(requests.empty());
    }
    SUBCASE("no terminal and no --yes: a usage error naming --yes, nothing sent") {
        if (::isatty(STDIN_FILENO))
            return; // run from a terminal: the prompt would wait for an answer
        test::CliRun cli;
        cli.ctx.global.hosts = {"http://127.0.0.1:7070"};
        cli.ctx.connect = agent;
        auto st = cli.run({"destroy", "hello"});
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().kind == common::ErrorKind::usage);
        CHECK(st.error().message.find("--yes") != std::string::npos);
        CHECK(requests.empty());
    }
}

TEST_CASE("init --engine auto asks the agents of --host which engine they run") {
    test::TempDir dir;
    std::filesystem::copy(test::fixtures_dir() / "init" / "go-stdlib", dir.path(),
                          std::filesystem::copy_options::recursive);
    const auto folder = dir.path().string();
    std::map<std::string, std::string> engines; // host -> GET /v1/info's engine ("" fails)
    std::vector<std::string> asked;
    auto run = [&](std::vector<std::string> hosts, std::vector<std::string> options = {}) {
        test::CliRun cli;
        cli.ctx.global.hosts = std::move(hosts);
        cli.ctx.connect = [&](const cli::HostUrl& url, const cli::SshSettings&,
                              const cli::transport::TlsOptions&) {
            auto engine = engines[url.base_url];
            return connect_to(
                [&, engine, host = url.base_url](const std::string& method,
                                                 std::string_view path) -> common::Result<json> {
                    asked.push_back(method + " " + std::string(path));
                    if (engine.empty())
                        return common::make_error(common::ErrorKind::connection,
                                                  "cannot connect to " + host);
                    return json{{"engine", engine}, {"version", "0.1.0"}};
                })(url, {}, {});
        };
        std::vector<std::string> args{"init", folder, "--force"};
        args.insert(args.end(), options.begin(), options.end());
        REQUIRE(cli.run(args).ok());
        return json::parse(cli.out.str());
    };
    engines = {{"http://127.0.0.1:7070", "docker"}, {"http://127.0.0.1:7071", "process"}};

    SUBCASE("one agent without a container engine: the process engine's files") {
        auto event = run({"http://127.0.0.1:7070", "http://127.0.0.1:7071"});
        CHECK(asked == std::vector<std::string>{"GET /v1/info", "GET /v1/info"});
        CHECK(event["variant"] == "process");
        CHECK(event["variant_reason"] ==
              "http://127.0.0.1:7071 has no container engine (--engine process)");
        CHECK(event["files"].size() == 1);
    }
    SUBCASE("every agent with a container engine: the Dockerfile") {
        auto event = run({"http://127.0.0.1:7070"});
        CHECK(event["variant"] == "container");
        CHECK(event["variant_reason"] == "http://127.0.0.1:7070 (docker) runs a container engine");
        CHECK(event["files"].size() == 2);
    }
    SUBCASE("an agent that does not answer: the Dockerfile, with a note saying so") {
        auto event = run({"http://127.0.0.1:7079"});
        CHECK(event["variant"] == "container");
        CHECK(event["notes"].dump().find("could not ask the agents which engine they run "
                                         "(cannot connect to http://127.0.0.1:7079)") !=
              std::string::npos);
    }
    SUBCASE("--engine docker or process: nothing asked") {
        CHECK(run({"http://127.0.0.1:7071"}, {"--engine", "docker"})["variant"] == "container");
        CHECK(run({"http://127.0.0.1:7070"}, {"--engine", "process"})["variant"] == "process");
        CHECK(asked.empty());
    }
}
