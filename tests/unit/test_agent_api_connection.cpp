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

TEST_CASE("an upload that cannot be written to disk is answered 500 io, saying the disk is full") {
    test::TempDir dir;
    // The upload's file is a link to /dev/full: every write fails with ENOSPC.
    const auto upload = dir.path() / "upload-1";
    std::filesystem::create_symlink("/dev/full", upload);
    agent::api::Router router;
    bool called = false;
    router.add(
        "PUT", "/v1/blobs/{digest}",
        [&](const agent::api::Request&) {
            called = true;
            return agent::api::Response{};
        },
        agent::api::BodyKind::file);
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
    CHECK(answer.rfind("HTTP/1.1 500", 0) == 0);
    CHECK(answer.find(R"("code":"io")") != std::string::npos);
    CHECK(answer.find("cannot store the uploaded body") != std::string::npos);
    CHECK(answer.find("the disk is full") != std::string::npos);
    CHECK_FALSE(called);
    CHECK(std::filesystem::exists("/dev/full")); // only the link was removed
    CHECK_FALSE(std::filesystem::is_symlink(upload));
}
