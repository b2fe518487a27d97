// agent/api/connection: a silent client is disconnected after the idle timeout;
// a unix-socket client is named.
#include <agent/api/connection.hpp>
#include <agent/api/router.hpp>
#include <agent/api/unix_socket.hpp>
#include "temp_dir.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <chrono>
#include <filesystem>
#include <future>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

// A connected pair of TCP sockets on 127.0.0.1: {client, server}.
std::pair<int, int> tcp_pair() {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener, 1) == 0);
    REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    const int client = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    const int server = ::accept(listener, nullptr, nullptr);
    ::close(listener);
    REQUIRE(server >= 0);
    return {client, server};
}

} // namespace

TEST_CASE("a client that stalls mid-request is disconnected after the idle timeout") {
    agent::api::Router router;
    agent::api::ConnectionOptions options;
    options.idle_timeout = std::chrono::milliseconds(200);
    auto [client, server] = tcp_pair();
    const std::string partial = "PUT /v1/blobs/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n";
    REQUIRE(::send(client, partial.data(), partial.size(), 0) ==
            static_cast<ssize_t>(partial.size()));

    const auto started = std::chrono::steady_clock::now();
    auto served = std::async(std::launch::async, [&, fd = server] {
        agent::api::serve_connection(fd, router, options);
    });
    REQUIRE(served.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(took >= std::chrono::milliseconds(150));
    CHECK(took < std::chrono::seconds(3));
    ::close(server);
    char byte = 0;
    CHECK(::recv(client, &byte, 1, 0) <= 0); // the connection is gone
    ::close(client);
}

TEST_CASE("a request on a unix socket names the connecting user (SO_PEERCRED)") {
    agent::api::Router router;
    router.add("GET", "/v1/whoami", [](const agent::api::Request& request) {
        agent::api::Response response;
        response.content_type = "text/plain";
        response.body = (request.peer.unix_socket ? "unix " : "tcp ") + request.peer.user + " " +
                        std::to_string(request.peer.uid);
        return response;
    });
    agent::api::ConnectionOptions options;
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    const std::string request = "GET /v1/whoami HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    REQUIRE(::send(fds[0], request.data(), request.size(), 0) ==
            static_cast<ssize_t>(request.size()));
    auto served = std::async(std::launch::async, [&, fd = fds[1]] {
        agent::api::serve_connection(fd, router, options, agent::api::unix_peer(fd));
    });
    REQUIRE(served.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    ::close(fds[1]);
    std::string answer;
    char buffer[4096];
    for (ssize_t n; (n = ::recv(fds[0], buffer, sizeof buffer, 0)) > 0;)
        answer.append(buffer, static_cast<std::size_t>(n));
    ::close(fds[0]);
    const passwd* me = ::getpwuid(::getuid());
    REQUIRE(me != nullptr);
    CHECK(answer.find("200 OK") != std::string::npos);
    CHECK(answer.find(fmt::format("unix {} {}", me->pw_name, ::getuid())) != std::string::npos);
}

namespace {
// PUT /v1/blobs/{digest} with a file body; `called` says whether its handler ran.
agent::api::Router upload_router(bool& called) {
    agent::api::Router router;
    router.add(
        "PUT", "/v1/blobs/{digest}",
        [&called](const agent::api::Request&) {
            called = true;
            return agent::api::Response{};
        },
        agent::api::BodyKind::file);
    return router;
}
} // namespace

TEST_CASE("an upload that cannot be written to disk is answered 507 disk_full, saying so") {
    test::TempDir dir;
    // The upload's file is a link to /dev/full: every write fails with ENOSPC.
    const auto upload = dir.path() / "upload-1";
    std::filesystem::create_symlink("/dev/full", upload);
    bool called = false;
    const auto router = upload_router(called);
    agent::api::ConnectionOptions options;
    options.temp_path = [&] { return upload; };
    options.max_file_body = 1 << 20;
    auto [client, server] = tcp_pair();
    const std::string body(200000, 'x');
    const std::string request = fmt::format(
        "PUT /v1/blobs/abc HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.size());
    auto served = std::async(std::launch::async, [&, fd = server] {
        agent::api::serve_connection(fd, router, options);
    });
    auto sent = std::async(std::launch::async, [&, fd = client] {
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
        ::send(fd, body.data(), body.size(), MSG_NOSIGNAL);
        ::shutdown(fd, SHUT_WR);
    });
    REQUIRE(served.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    sent.wait();
    ::close(server);
    std::string answer;
    char buffer[4096];
    for (ssize_t n; (n = ::recv(client, buffer, sizeof buffer, 0)) > 0;)
        answer.append(buffer, static_cast<std::size_t>(n));
    ::close(client);
    CHECK(answer.rfind("HTTP/1.1 507", 0) == 0);
    CHECK(answer.find(R"("code":"disk_full")") != std::string::npos);
    CHECK(answer.find("cannot store the uploaded body") != std::string::npos);
    CHECK(answer.find("the disk is full") != std::string::npos);
    CHECK_FALSE(called);
    CHECK(std::filesystem::exists("/dev/full")); // only the link was removed
    CHECK_FALSE(std::filesystem::is_symlink(upload));
}

TEST_CASE("an upload the disk guard refuses is answered 507 from its Content-Length") {
    test::TempDir dir;
    bool called = false;
    const auto router = upload_router(called);
    agent::api::ConnectionOptions options;
    options.temp_path = [&] { return dir.path() / "upload-1"; };
    options.max_file_body = 1 << 20;
    std::uint64_t asked = 0;
    options.disk_check = [&](std::uint64_t bytes) -> common::Status {
        asked = bytes;
        return common::make_error(common::ErrorKind::disk_full,
                                  "the agent's disk is full: 1.0 MiB free");
    };
    auto [client, server] = tcp_pair();
    const std::string request =
        "PUT /v1/blobs/abc HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n"
        "Expect: 100-continue\r\n\r\n";
    auto served = std::async(std::launch::async, [&, fd = server] {
        agent::api::serve_connection(fd, router, options);
    });
    ::send(client, request.data(), request.size(), MSG_NOSIGNAL);
    std::string answer;
    char buffer[4096];
    while (answer.find("free") == std::string::npos) {
        const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
        if (n <= 0)
            break;
        answer.append(buffer, static_cast<std::size_t>(n));
    }
    ::shutdown(client, SHUT_WR);
    REQUIRE(served.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    ::close(server);
    ::close(client);
    CHECK(asked == 200000);
    // No "100 Continue": the client never sends the body.
    CHECK(answer.rfind("HTTP/1.1 507", 0) == 0);
    CHECK(answer.find(R"("code":"disk_full")") != std::string::npos);
    CHECK_FALSE(called);
    CHECK_FALSE(std::filesystem::exists(dir.path() / "upload-1"));
}
