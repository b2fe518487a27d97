// agent/runtime/http_probe.cpp: unix_http_get, the GET over a unix socket (a server
// of the test's own answers what the Docker daemon would). The health probe itself
// is tested with the process runtime (test_agent_runtime_process.cpp).

#include <agent/runtime/http_probe.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

#include "temp_dir.hpp"

using agent::runtime::unix_http_get;
using namespace std::chrono_literals;

namespace {

// A unix socket server for one connection: reads the request head, then sends
// `answer` (nothing when `silent`) and closes.
class OneShotServer {
  public:
    OneShotServer(std::string path, std::string answer, bool silent = false)
        : m_path(std::move(path)) {
        m_fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, m_path.c_str(), sizeof address.sun_path - 1);
        REQUIRE(::bind(m_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(m_fd, 1) == 0);
        m_thread = std::thread([this, answer, silent] {
            int client = ::accept(m_fd, nullptr, nullptr);
            if (client < 0)
                return;
            char buffer[4096];
            while (m_request.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
                if (n <= 0)
                    break;
                m_request.append(buffer, static_cast<std::size_t>(n));
            }
            if (silent) {
                while (!m_done)
                    std::this_thread::sleep_for(5ms);
            } else {
                // In two writes: the reader must not stop at the first.
                auto half = answer.size() / 2;
                (void)!::send(client, answer.data(), half, MSG_NOSIGNAL);
                std::this_thread::sleep_for(5ms);
                (void)!::send(client, answer.data() + half, answer.size() - half, MSG_NOSIGNAL);
            }
            ::close(client);
        });
    }
    ~OneShotServer() {
        m_done = true;
        ::shutdown(m_fd, SHUT_RDWR);
        m_thread.join();
        ::close(m_fd);
    }
    const std::string& request() const { return m_request; }

  private:
    std::string m_path;
    int m_fd = -1;
    std::thread m_thread;
    std::string m_request;
    std::atomic<bool> m_done{false};
};

} // namespace

TEST_CASE("unix_http_get: the status and whole body of an HTTP/1.0 answer") {
    test::TempDir dir;
    const std::string path = (dir.path() / "docker.sock").string();
    const std::string body = R"({"State":{"Running":true,"Pid":4242}})";
    std::string request;
    {
        OneShotServer server(path,
                             "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body);
        auto answer = unix_http_get(path, "/containers/web-v1/json", 2s);
        REQUIRE(answer.ok());
        CHECK(answer->status == 200);
        CHECK(answer->body == body);
        request = server.request();
    }
    CHECK(request.rfind("GET /containers/web-v1/json HTTP/1.0\r\n", 0) == 0);
    CHECK(request.find("\r\nHost: docker\r\n") != std::string::npos);

    ::unlink(path.c_str());
    OneShotServer missing(path,
                          "HTTP/1.1 404 Not Found\r\n\r\n{\"message\":\"No such container\"}");
    auto not_found = unix_http_get(path, "/containers/nope/json", 2s);
    REQUIRE(not_found.ok());
    CHECK(not_found->status == 404);
}

TEST_CASE("unix_http_get: no socket, no answer in time, or not HTTP, is an io error") {
    test::TempDir dir;
    const std::string path = (dir.path() / "docker.sock").string();
    auto nobody = unix_http_get(path, "/info", 1s);
    REQUIRE_FALSE(nobody.ok());
    CHECK(nobody.error().kind == common::ErrorKind::io);
    CHECK(nobody.error().message.find("cannot connect to " + path) != std::string::npos);
    {
        OneShotServer silent(path, "", true);
        auto start = std::chrono::steady_clock::now();
        auto late = unix_http_get(path, "/info", 200ms);
        REQUIRE_FALSE(late.ok());
        CHECK(late.error().message.find("did not answer within") != std::string::npos);
        CHECK(std::chrono::steady_clock::now() - start < 2s);
    }
    ::unlink(path.c_str());
    {
        OneShotServer garbage(path, "SSH-2.0-OpenSSH_9.2\r\n");
        auto wrong = unix_http_get(path, "/info", 2s);
        REQUIRE_FALSE(wrong.ok());
        CHECK(wrong.error().message.find("did not answer HTTP") != std::string::npos);
    }
    ::unlink(path.c_str());
    {
        OneShotServer chunked(
            path, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
        auto wrong = unix_http_get(path, "/info", 2s);
        REQUIRE_FALSE(wrong.ok());
        CHECK(wrong.error().message.find("in chunks") != std::string::npos);
    }
}
