// agent/api/server: the TCP front door. A head sent a byte at a time is cut off
// at the head deadline; silent connections past an address's share close the
// oldest while a prompt request is answered; token holders and everyone else
// have separate thread budgets; a body slower than the minimum rate gets 408;
// a token holder's keep-alive connection waits without a thread.
#include <agent/api/errors.hpp>
#include <agent/api/gate.hpp>
#include <agent/api/server.hpp>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// "Bearer good" is a token holder; anything else is refused with 401 on
// routes that are not open.
class FakeGate final : public agent::api::RequestGate {
  public:
    std::optional<agent::api::Response> admit(agent::api::Request& request,
                                              const agent::api::Route* route,
                                              std::string_view authorization) override {
        if (authorization == "Bearer good") {
            request.peer.token_id = "good";
            return std::nullopt;
        }
        if (route && route->access == agent::api::Access::open)
            return std::nullopt;
        return agent::api::error_response(401, "unauthorized", "no token");
    }
    bool authenticates(std::string_view authorization) override {
        return authorization == "Bearer good";
    }
    void record(const agent::api::Request&, const agent::api::Response&) override {}
};

// A handler that holds its thread until released.
struct Latch {
    std::mutex mutex;
    std::condition_variable changed;
    int entered = 0;
    bool open = false;
    void wait() {
        std::unique_lock lock(mutex);
        ++entered;
        changed.notify_all();
        changed.wait(lock, [&] { return open; });
    }
    bool wait_entered(int n) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, 5s, [&] { return entered >= n; });
    }
    void release() {
        std::lock_guard lock(mutex);
        open = true;
        changed.notify_all();
    }
};

agent::api::Response text(std::string body) {
    agent::api::Response response;
    response.content_type = "text/plain";
    response.body = std::move(body);
    return response;
}

struct FrontDoor {
    FakeGate gate;
    Latch latch;
    agent::api::Router router;
    std::unique_ptr<agent::api::Server> server;
    std::thread thread;

    explicit FrontDoor(agent::api::ServerLimits limits) {
        router.add(
            "GET", "/v1/ping", [](const agent::api::Request&) { return text("pong"); },
            agent::api::BodyKind::json, agent::api::Access::open);
        router.add(
            "GET", "/v1/hold",
            [this](const agent::api::Request&) {
                latch.wait();
                return text("held");
            },
            agent::api::BodyKind::json, agent::api::Access::open);
        router.add("POST", "/v1/echo", [](const agent::api::Request& request) {
            return text("got " + std::to_string(request.body.size()));
        });
        // A body read as it arrives: counts its bytes, or stops after `stop_at` of them.
        router.add(
            "POST", "/v1/stream",
            [](const agent::api::Request& request) {
                const auto stop_at = request.query.count("stop_at")
                                         ? std::stoul(request.query.at("stop_at"))
                                         : std::string::npos;
                std::size_t total = 0;
                char buffer[4096];
                while (total < stop_at) {
                    const long n = request.body_source->read(buffer, sizeof buffer);
                    if (n <= 0)
                        break;
                    total += static_cast<std::size_t>(n);
                }
                return text("streamed " + std::to_string(total));
            },
            agent::api::BodyKind::stream);
        agent::api::ConnectionOptions options;
        options.head_timeout = 400ms;
        options.idle_timeout = 3s;
        options.min_body_rate = 1000;
        options.body_grace = 300ms;
        options.max_file_body = 1 << 20;
        options.gate = &gate;
        server = std::make_unique<agent::api::Server>(router, options, limits);
        REQUIRE(server->listen({"127.0.0.1", 0}).ok());
        thread = std::thread([this] { server->run(); });
    }
    ~FrontDoor() {
        latch.release();
        server->stop();
        thread.join();
        CHECK(server->wait_idle(5s));
    }

    int connect() const {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(server->port());
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        return fd;
    }
};

void send_all(int fd, const std::string& data) {
    REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(data.size()));
}

// What the server sends until it closes or `limit` passes.
std::string read_until_closed(int fd, std::chrono::milliseconds limit = 5s) {
    std::string out;
    const auto deadline = Clock::now() + limit;
    char buffer[4096];
    while (Clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0)
            continue;
        const auto n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0)
            break;
        out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
}

// True when the server closed `fd` (recv sees the end, or a reset) within `limit`.
bool closed_within(int fd, std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    char buffer[4096];
    while (Clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 20) <= 0)
            continue;
        if (::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT) <= 0)
            return true;
    }
    return false;
}

std::string request(const std::string& method, const std::string& path,
                    const std::string& extra = "") {
    return method + " " + path + " HTTP/1.1\r\nHost: agent\r\n" + extra + "\r\n";
}

} // namespace

TEST_CASE("front door: a head sent a byte at a time is cut off at the head deadline") {
    FrontDoor door({});
    const int fd = door.connect();
    const std::string head = "GET /v1/ping HTTP/1.1\r\nHost: agent\r\nX-Slow: ";
    const auto started = Clock::now();
    bool closed = false;
    // One byte every 50 ms: each restarted an idle timer; the head deadline holds.
    for (std::size_t i = 0; i < 60 && !closed; ++i) {
        const char byte = i < head.size() ? head[i] : 'a';
        if (::send(fd, &byte, 1, MSG_NOSIGNAL) != 1)
            break;
        closed = closed_within(fd, 50ms);
    }
    const auto took = Clock::now() - started;
    CHECK(closed);
    CHECK(took >= 350ms);
    CHECK(took < 1500ms);
    CHECK(door.server->counts().timed_out == 1);
    ::close(fd);
}

TEST_CASE("front door: silent clients past an address's share go oldest first; a prompt "
          "request is answered") {
    agent::api::ServerLimits limits;
    limits.max_pending_per_address = 4;
    limits.max_pending = 8;
    FrontDoor door(limits);
    std::vector<int> silent;
    for (int i = 0; i < 10; ++i)
        silent.push_back(door.connect());
    const int prompt = door.connect();
    send_all(prompt, request("GET", "/v1/ping", "Connection: close\r\n"));
    const auto answer = read_until_closed(prompt);
    CHECK(answer.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(answer.find("pong") != std::string::npos);
    // The first seven were closed to make room (the prompt one took a slot too).
    for (int i = 0; i < 7; ++i)
        CHECK_MESSAGE(closed_within(silent[static_cast<std::size_t>(i)], 1s),
                      "silent connection ", i, " was closed");
    CHECK_FALSE(closed_within(silent.back(), 100ms));
    CHECK(door.server->counts().evicted >= 7);
    CHECK(door.server->counts().pending <= 4);
    for (int fd : silent)
        ::close(fd);
    ::close(prompt);
}

TEST_CASE("front door: requests without a token cannot use up a token holder's threads") {
    agent::api::ServerLimits limits;
    limits.max_anonymous_workers = 2;
    limits.max_workers = 2;
    FrontDoor door(limits);
    std::vector<int> held;
    for (int i = 0; i < 2; ++i) {
        held.push_back(door.connect());
        send_all(held.back(), request("GET", "/v1/hold"));
    }
    REQUIRE(door.latch.wait_entered(2));
    CHECK(door.server->counts().anonymous_workers == 2);

    const int anonymous = door.connect();
    send_all(anonymous, request("GET", "/v1/ping"));
    const auto refused = read_until_closed(anonymous);
    CHECK(refused.rfind("HTTP/1.1 503", 0) == 0);
    CHECK(refused.find("Retry-After: 1") != std::string::npos);

    const int holder = door.connect();
    send_all(holder, request("GET", "/v1/ping", "Authorization: Bearer good\r\nConnection: close\r\n"));
    const auto served = read_until_closed(holder);
    CHECK(served.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(door.server->counts().busy == 1);

    door.latch.release();
    for (int fd : held)
        CHECK(read_until_closed(fd, 300ms).find("held") != std::string::npos);
    for (int fd : held)
        ::close(fd);
    ::close(anonymous);
    ::close(holder);
}

TEST_CASE("front door: a body slower than the minimum rate gets 408 and the connection closes") {
    FrontDoor door({});
    const int fd = door.connect();
    send_all(fd, request("POST", "/v1/echo",
                         "Authorization: Bearer good\r\nContent-Type: application/json\r\n"
                         "Content-Length: 100000\r\n") +
                     "{\"a\":");
    const auto started = Clock::now();
    const auto answer = read_until_closed(fd, 3s);
    CHECK(answer.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(answer.find("too_slow") != std::string::npos);
    CHECK(Clock::now() - started < 2s);
    ::close(fd);

    // A body that arrives promptly is read whole.
    const int quick = door.connect();
    send_all(quick, request("POST", "/v1/echo",
                            "Authorization: Bearer good\r\nConnection: close\r\n"
                            "Content-Type: application/json\r\nContent-Length: 7\r\n") +
                        "{\"a\":1}");
    CHECK(read_until_closed(quick).find("got 7") != std::string::npos);
    ::close(quick);
}

TEST_CASE("front door: a token holder's keep-alive connection waits without a thread and is "
          "served again") {
    FrontDoor door({});
    const int fd = door.connect();
    const auto ask = request("GET", "/v1/ping", "Authorization: Bearer good\r\n");
    send_all(fd, ask);
    char buffer[4096];
    std::string first;
    while (first.find("pong") == std::string::npos) {
        const auto n = ::recv(fd, buffer, sizeof buffer, 0);
        REQUIRE(n > 0);
        first.append(buffer, static_cast<std::size_t>(n));
    }
    // Past the head deadline, idle: still open, held by the front door.
    std::this_thread::sleep_for(600ms);
    const auto counts = door.server->counts();
    CHECK(counts.idle_trusted == 1);
    CHECK(counts.workers == 0);
    CHECK(counts.pending == 0);
    send_all(fd, request("GET", "/v1/ping", "Authorization: Bearer good\r\nConnection: close\r\n"));
    CHECK(read_until_closed(fd).find("pong") != std::string::npos);
    ::close(fd);
}

TEST_CASE("front door: a refused request's unread body is drained without holding a thread") {
    FrontDoor door({});
    const int fd = door.connect();
    send_all(fd, request("POST", "/v1/echo",
                         "Content-Type: application/json\r\nContent-Length: 100000\r\n") +
                     std::string(20000, ' '));
    std::string answer;
    char buffer[4096];
    while (answer.find("\r\n\r\n") == std::string::npos) {
        const auto n = ::recv(fd, buffer, sizeof buffer, 0);
        REQUIRE(n > 0);
        answer.append(buffer, static_cast<std::size_t>(n));
    }
    CHECK(answer.rfind("HTTP/1.1 401", 0) == 0);
    // The client keeps sending its body; no thread waits for it.
    send_all(fd, std::string(20000, ' '));
    const auto freed = [&] {
        for (int i = 0; i < 100; ++i, std::this_thread::sleep_for(10ms))
            if (door.server->counts().anonymous_workers == 0)
                return true;
        return false;
    };
    CHECK(freed());
    // It pauses: the agent closes without a reset (end of stream, not ECONNRESET).
    const auto started = Clock::now();
    ssize_t n = 0;
    while ((n = ::recv(fd, buffer, sizeof buffer, 0)) > 0) {
    }
    CHECK(n == 0);
    CHECK(Clock::now() - started < 1500ms);
    ::close(fd);
}

TEST_CASE("front door: a streamed body is read as it arrives, with the same limits") {
    FrontDoor door({});
    const std::string body(300000, 'x');
    const auto head = [&](const std::string& path, std::size_t length) {
        return request("POST", path,
                       "Authorization: Bearer good\r\nConnection: close\r\n"
                       "Content-Type: application/octet-stream\r\nContent-Length: " +
                           std::to_string(length) + "\r\n");
    };
    // Read whole, in pieces, the bytes the head did not bring included.
    const int whole = door.connect();
    send_all(whole, head("/v1/stream", body.size()) + body);
    const auto read_whole = read_until_closed(whole);
    CHECK_MESSAGE(read_whole.find("streamed 300000") != std::string::npos, read_whole);
    ::close(whole);

    // A handler that answers before the end: the answer still reaches the client.
    const int early = door.connect();
    send_all(early, head("/v1/stream?stop_at=1000", body.size()) + body.substr(0, 100000));
    const auto answered = read_until_closed(early, 3s);
    CHECK(answered.rfind("HTTP/1.1 200", 0) == 0);
    const auto said = answered.find("streamed ");
    REQUIRE(said != std::string::npos);
    const auto streamed = std::stoul(answered.substr(said + 9));
    CHECK(streamed >= 1000); // it stopped once it had read that much
    CHECK(streamed < 100000);
    ::close(early);

    // Slower than the minimum rate: 408, whatever the handler would have said.
    const int slow = door.connect();
    send_all(slow, head("/v1/stream", body.size()) + "abc");
    const auto started = Clock::now();
    const auto refused = read_until_closed(slow, 3s);
    CHECK(refused.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(refused.find("too_slow") != std::string::npos);
    CHECK(Clock::now() - started < 2s);
    ::close(slow);
}
