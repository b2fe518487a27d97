// agent/runtime: spawning, streaming build output, liveness checks, probes.
#include <agent/runtime/command.hpp>
#include <agent/runtime/http_probe.hpp>
#include <agent/runtime/ports.hpp>
#include <agent/runtime/process.hpp>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "temp_dir.hpp"

using namespace agent::runtime;

namespace {
StreamingCommand shell(const std::string& script, std::vector<std::string>& lines) {
    StreamingCommand command;
    command.spawn.argv = {"/bin/sh", "-c", script};
    command.spawn.env = clean_environment("/tmp", {{"GREETING", "hi"}});
    command.on_line = [&lines](std::string_view line) { lines.emplace_back(line); };
    return command;
}
} // namespace

TEST_CASE("streaming command delivers each line and the exit status") {
    std::vector<std::string> lines;
    auto result = run_streaming(shell("echo $GREETING; echo err >&2; printf tail; exit 4", lines));
    REQUIRE(result.ok());
    CHECK(result->outcome == Outcome::exited);
    CHECK(result->status == 4);
    CHECK(lines == std::vector<std::string>{"hi", "err", "tail"});
}

TEST_CASE("streaming command gets a clean environment") {
    std::vector<std::string> lines;
    ::setenv("DEPLOY_TEST_LEAK", "secret", 1);
    auto result = run_streaming(shell("echo \"[$DEPLOY_TEST_LEAK]\" \"$PATH\" \"$LANG\"", lines));
    REQUIRE(result.ok());
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "[] /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin C.UTF-8");
}

TEST_CASE("streaming command is killed with its process group on timeout") {
    std::vector<std::string> lines;
    auto command = shell("sleep 30 & echo $!; wait", lines);
    command.timeout = std::chrono::milliseconds(300);
    command.kill_grace = std::chrono::milliseconds(200);
    auto started = std::chrono::steady_clock::now();
    auto result = run_streaming(command);
    REQUIRE(result.ok());
    CHECK(result->outcome == Outcome::timed_out);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
    REQUIRE(lines.size() == 1);
    pid_t background = std::stoi(lines[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK_FALSE(process_start_time(background).has_value()); // the whole group is gone
}

TEST_CASE("process_matches detects a dead or reused pid") {
    SpawnSpec spec;
    spec.argv = {"/bin/sleep", "30"};
    spec.env = clean_environment("/tmp", {});
    spec.cwd = "/tmp";
    auto pid = spawn(spec);
    REQUIRE(pid.ok());
    auto start = process_start_time(*pid);
    REQUIRE(start.has_value());
    CHECK(process_matches(*pid, *start));
    CHECK_FALSE(process_matches(*pid, *start + 1));
    CHECK(::getpgid(*pid) == *pid); // own session and group: outlives the agent
    terminate_group(*pid, std::chrono::milliseconds(1000));
    CHECK_FALSE(process_matches(*pid, *start));
}

TEST_CASE("http probe reports a refused connection as status 0") {
    auto port = pick_free_port();
    REQUIRE(port.ok());
    auto result = http_probe(*port, "/healthz", std::chrono::milliseconds(500));
    CHECK(result.status == 0);
    CHECK_FALSE(result.healthy());
    CHECK_FALSE(result.message.empty());
}

TEST_CASE("a signal blocked at spawn stays pending instead of killing the child") {
    std::vector<std::string> lines;
    SUBCASE("blocked: the child lives on") {
        auto command = shell("kill -HUP $$; echo survived", lines);
        command.spawn.blocked_signals = {SIGHUP};
        auto result = run_streaming(command);
        REQUIRE(result.ok());
        CHECK(result->outcome == Outcome::exited);
        CHECK(lines == std::vector<std::string>{"survived"});
    }
    SUBCASE("not blocked: the default action ends it") {
        auto result = run_streaming(shell("kill -HUP $$; echo survived", lines));
        REQUIRE(result.ok());
        CHECK(lines.empty());
    }
}

TEST_CASE("http_get sends its Host and fields and returns the answer's fields") {
    int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(server >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(server, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(server, 4) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(server, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    std::string received;
    std::thread answer([&] {
        int client = ::accept(server, nullptr, nullptr);
        char buffer[4096];
        while (received.find("\r\n\r\n") == std::string::npos) {
            auto n = ::recv(client, buffer, sizeof buffer, 0);
            if (n <= 0)
                break;
            received.append(buffer, static_cast<std::size_t>(n));
        }
        const std::string reply = "HTTP/1.1 503 Service Unavailable\r\nX-Deploy-Routed: web v3\r\n"
                                  "content-length: 0\r\n\r\n";
        ::send(client, reply.data(), reply.size(), MSG_NOSIGNAL);
        ::close(client);
    });
    HttpGet request;
    request.port = ntohs(address.sin_port);
    request.path = "/healthz";
    request.host = "web.localhost";
    request.fields = {{"X-Deploy-Probe", "key"}};
    auto result = http_get(request, std::chrono::milliseconds(2000));
    answer.join();
    ::close(server);
    CHECK(received.starts_with("GET /healthz HTTP/1.1\r\nHost: web.localhost\r\n"));
    CHECK(received.find("\r\nX-Deploy-Probe: key\r\n") != std::string::npos);
    CHECK(result.status == 503);
    CHECK_FALSE(result.healthy());
    CHECK(result.field("x-deploy-routed") == std::optional<std::string>("web v3"));
    CHECK(result.field("Content-Length") == std::optional<std::string>("0"));
    CHECK_FALSE(result.field("X-Other").has_value());
}

TEST_CASE("http_get reports a refused connection and a bad address as status 0") {
    auto port = pick_free_port();
    REQUIRE(port.ok());
    HttpGet request;
    request.port = *port;
    auto refused = http_get(request, std::chrono::milliseconds(500));
    CHECK(refused.status == 0);
    CHECK_FALSE(refused.message.empty());
    request.address = "not-an-ip";
    CHECK(http_get(request, std::chrono::milliseconds(500)).message ==
          "not an IP address: not-an-ip");
}
