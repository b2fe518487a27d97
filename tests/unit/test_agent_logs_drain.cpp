#include <agent/logs/drain.hpp>
#include <agent/logs/stamp.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <arpa/inet.h>
#include <chrono>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "temp_dir.hpp"

using agent::logs::classify_log_file;
using agent::logs::LogFileKind;
using agent::logs::syslog_frame;

namespace {

// A syslog receiver on 127.0.0.1: takes connections, reads octet-counted messages.
class Receiver {
  public:
    Receiver() {
        m_listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(m_listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(m_listener, 4) == 0);
        socklen_t size = sizeof address;
        ::getsockname(m_listener, reinterpret_cast<sockaddr*>(&address), &size);
        port = ntohs(address.sin_port);
    }
    ~Receiver() {
        hang_up();
        if (m_listener >= 0)
            ::close(m_listener);
    }
    // Waits (5 s at most) for a connection.
    bool accept() {
        pollfd p{m_listener, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1)
            return false;
        m_connection = ::accept4(m_listener, nullptr, nullptr, SOCK_CLOEXEC);
        return m_connection >= 0;
    }
    // Nobody listens any more: connecting is refused.
    void go_away() {
        hang_up();
        ::close(m_listener);
        m_listener = -1;
    }
    void hang_up() {
        if (m_connection >= 0)
            ::close(m_connection);
        m_connection = -1;
    }
    // Reads messages until `count` came (5 s at most); returns them all.
    std::vector<std::string> read(std::size_t count) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (m_messages.size() < count && std::chrono::steady_clock::now() < deadline) {
            pollfd p{m_connection, POLLIN, 0};
            if (::poll(&p, 1, 100) != 1)
                continue;
            char buffer[65536];
            const ssize_t got = ::recv(m_connection, buffer, sizeof buffer, 0);
            if (got <= 0)
                break;
            m_buffer.append(buffer, static_cast<std::size_t>(got));
            for (;;) { // "LEN MSG"
                const auto space = m_buffer.find(' ');
                if (space == std::string::npos)
                    break;
                const auto length = std::stoul(m_buffer.substr(0, space));
                if (m_buffer.size() < space + 1 + length)
                    break;
                m_messages.push_back(m_buffer.substr(space + 1, length));
                m_buffer.erase(0, space + 1 + length);
            }
        }
        return m_messages;
    }
    void forget() { m_messages.clear(); }
    std::uint16_t port = 0;

  private:
    int m_listener = -1;
    int m_connection = -1;
    std::string m_buffer;
    std::vector<std::string> m_messages;
};

void append(const std::filesystem::path& file, const std::string& text) {
    std::ofstream(file, std::ios::app) << text;
}

// The text of a message: what follows "... MSGID - ".
std::string text_of(const std::string& message) {
    const auto at = message.find(" - ");
    return at == std::string::npos ? message : message.substr(at + 3);
}

template <class Predicate> bool eventually(Predicate predicate) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!predicate()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

} // namespace

TEST_CASE("syslog_frame: an RFC 5424 message, octet-counted (RFC 6587)") {
    const std::string frame = syslog_frame(
        {"2026-12-04T10:00:00.000001Z", "web-1", "hello", "web", "v4", "GET / 200", 6});
    const std::string message = "<14>1 2026-12-04T10:00:00.000001Z web-1 hello web v4 - GET / 200";
    CHECK(frame == std::to_string(message.size()) + " " + message);
    // Header fields: printable ASCII without spaces, "-" when empty; the text as it is.
    const auto odd =
        syslog_frame({"2026-12-04T10:00:00Z", "", "my app", "cron.tick", "", "é ok", 4});
    CHECK(odd.find("<12>1 2026-12-04T10:00:00Z - my_app cron.tick - - é ok") != std::string::npos);
}

TEST_CASE("classify_log_file: which process and release a log holds") {
    auto kind = classify_log_file("v4.app.log");
    REQUIRE(kind);
    CHECK(kind->form == LogFileKind::Form::output);
    CHECK(kind->process == "web");
    CHECK(kind->release == "v4");
    CHECK(classify_log_file("v12.worker.log")->process == "worker");
    CHECK(classify_log_file("cron.tick.log")->process == "cron.tick");
    CHECK(classify_log_file("cron.tick.log")->release.empty());
    CHECK(classify_log_file("v4.ndjson")->form == LogFileKind::Form::events);
    CHECK(classify_log_file("access.ndjson")->form == LogFileKind::Form::access);
    for (const char* other : {"v4.app.log.1.zst", "access.ndjson.1", "state.json", "x.app.log",
                              "v4.log", ".log", "cron..log"}) {
        CAPTURE(other);
        CHECK_FALSE(classify_log_file(other));
    }
}

TEST_CASE("Drain: new lines reach the receiver; a broken connection sends them again; a full "
          "queue drops and counts") {
    test::TempDir dir;
    const auto logs = dir.path() / "logs";
    std::filesystem::create_directories(logs);
    const auto stamp = agent::logs::stamp_now();
    append(logs / "v1.app.log", stamp + "before the drain\n");
    Receiver receiver;
    common::DrainTarget target{false, "127.0.0.1", receiver.port, ""};
    auto drain = std::make_unique<agent::logs::Drain>("hello", logs, dir.path() / "drain",
                                                      "syslog+tcp://127.0.0.1", target, 64 * 1024);
    std::this_thread::sleep_for(std::chrono::milliseconds(300)); // it has looked once
    append(logs / "v1.app.log", stamp + "one\n" + stamp + "two\n");
    append(
        logs / "v2.ndjson",
        R"({"event":"state","release":"v2","state":"BUILDING"})"
        "\n"
        R"({"event":"log","release":"v2","stream":"build","line":"compiling","ts":"2026-12-04T10:00:00.000Z"})"
        "\n");
    REQUIRE(receiver.accept());
    auto messages = receiver.read(3);
    REQUIRE(messages.size() == 3);
    std::vector<std::string> texts;
    for (const auto& m : messages)
        texts.push_back(text_of(m));
    // Files in directory order: the two files' lines, each file's in order.
    CHECK(std::count(texts.begin(), texts.end(), "one") == 1);
    CHECK(std::count(texts.begin(), texts.end(), "compiling") == 1);
    CHECK(std::find(texts.begin(), texts.end(), "one") <
          std::find(texts.begin(), texts.end(), "two"));
    for (const auto& m : messages) {
        if (text_of(m) == "one")
            CHECK(m.find("<14>1 " + stamp.substr(0, 27) + " ") == 0);
        if (text_of(m) == "compiling")
            CHECK(m.find(" hello build v2 - compiling") != std::string::npos);
    }
    CHECK(drain->stats().connected);

    SUBCASE("the receiver goes before confirming: everything since is sent again") {
        receiver.hang_up();
        receiver.forget();
        REQUIRE(receiver.accept());
        auto again = receiver.read(3);
        CHECK(again.size() == 3);
        // Now it stays: after a second the three count as delivered.
        CHECK(eventually([&] { return drain->stats().delivered == 3; }));
        CHECK(drain->stats().queued_bytes == 0);
        // An agent restart: the new drain goes on where the old one stopped.
        drain.reset();
        receiver.hang_up();
        receiver.forget();
        drain = std::make_unique<agent::logs::Drain>("hello", logs, dir.path() / "drain",
                                                     "syslog+tcp://127.0.0.1", target, 64 * 1024);
        append(logs / "v1.app.log", stamp + "three\n");
        REQUIRE(receiver.accept());
        auto after = receiver.read(1);
        REQUIRE(after.size() == 1);
        CHECK(text_of(after[0]) == "three");
        CHECK(drain->stats().delivered == 3); // kept across the restart
    }
    SUBCASE("a drain made again reports what is not confirmed yet as queued from the start") {
        // Within the second a sent message takes to count as delivered: none is, and the
        // drain that takes over (its settings changed, the agent restarted) sends them again.
        drain.reset();
        receiver.hang_up();
        receiver.forget();
        drain = std::make_unique<agent::logs::Drain>("hello", logs, dir.path() / "drain",
                                                     "syslog+tcp://127.0.0.1", target, 64 * 1024);
        CHECK(drain->stats().queued_bytes > 0); // not 0 until its thread first looked
        REQUIRE(receiver.accept());
        CHECK(receiver.read(3).size() == 3);
        CHECK(eventually([&] { return drain->stats().queued_bytes == 0; }));
    }
    SUBCASE("a burst larger than the queue, the receiver there: nothing is dropped") {
        std::string burst;
        for (int i = 0; i < 2000; ++i)
            burst += stamp + "burst line " + std::to_string(i) + " " + std::string(60, 'x') + "\n";
        append(logs / "v1.app.log", burst);
        CHECK(receiver.read(2003).size() == 2003);
        CHECK(drain->stats().dropped == 0);
    }
    SUBCASE("the receiver is away: lines queue up to the bound, then are dropped and counted") {
        receiver.go_away();
        std::string burst;
        for (int i = 0; i < 2000; ++i)
            burst += stamp + "burst line " + std::to_string(i) + " " + std::string(60, 'x') + "\n";
        append(logs / "v1.app.log", burst);
        CHECK(eventually([&] { return drain->stats().dropped > 0; }));
        const auto stats = drain->stats();
        CHECK(stats.queued_bytes <= 64 * 1024);
        CHECK(stats.dropped < 2000);
    }
}

TEST_CASE("Drain: lines that keep coming are delivered and confirmed as they go") {
    test::TempDir dir;
    const auto logs = dir.path() / "logs";
    std::filesystem::create_directories(logs);
    Receiver receiver;
    common::DrainTarget target{false, "127.0.0.1", receiver.port, ""};
    agent::logs::Drain drain("hello", logs, dir.path() / "drain", "syslog+tcp://127.0.0.1", target,
                             64 * 1024);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::thread writer([&] {
        for (int i = 0; i < 150; ++i) {
            append(logs / "v1.app.log",
                   agent::logs::stamp_now() + "tick " + std::to_string(i) + "\n");
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });
    REQUIRE(receiver.accept());
    CHECK(receiver.read(150).size() == 150);
    writer.join();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    auto stats = drain.stats();
    CHECK(stats.delivered == 150);
    CHECK(stats.queued_bytes == 0);
    CHECK(stats.last_error.empty());
}

TEST_CASE("Drain: a state file it cannot read starts it afresh, at the end of the logs") {
    test::TempDir dir;
    const auto logs = dir.path() / "logs";
    std::filesystem::create_directories(logs);
    std::filesystem::create_directories(dir.path() / "drain");
    append(dir.path() / "drain" / "state.json",
           R"({"committed":"x","cursors":{"v1.app.log":[1]}})");
    append(logs / "v1.app.log", agent::logs::stamp_now() + "before\n");
    Receiver receiver;
    common::DrainTarget target{false, "127.0.0.1", receiver.port, ""};
    agent::logs::Drain drain("hello", logs, dir.path() / "drain", "syslog+tcp://127.0.0.1", target,
                             64 * 1024);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    append(logs / "v1.app.log", agent::logs::stamp_now() + "after\n");
    REQUIRE(receiver.accept());
    auto messages = receiver.read(1);
    REQUIRE(messages.size() == 1);
    CHECK(text_of(messages[0]) == "after");
}
