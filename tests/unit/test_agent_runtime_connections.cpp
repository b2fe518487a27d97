// Port activity from /proc/net/tcp (agent/runtime/connections): how a drain
// knows the replaced release has no request left.

#include <agent/runtime/connections.hpp>
#include <agent/runtime/ports.hpp>
#include <agent/runtime/process.hpp>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using agent::runtime::port_activity;

TEST_CASE("port_activity counts connections and the listen backlog of one local port") {
    // 127.0.0.1:8080 (1F90) listening with 2 queued; one established to it; one
    // connection from it elsewhere (an outgoing socket whose local port differs).
    const char* table =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0\n"
        "   1: 0100007F:1F90 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0\n"
        "   2: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0\n"
        "   3: 0100007F:1F90 0100007F:A1B3 06 00000000:00000000 00:00000000 00000000     0\n";
    auto busy = port_activity(table, 8080);
    CHECK(busy.connections == 1); // TIME_WAIT (06) is over
    CHECK(busy.queued == 2);
    CHECK_FALSE(busy.idle());
    CHECK(port_activity(table, 8081).idle());
    CHECK(port_activity("", 8080).idle());
}

TEST_CASE("port_activity sees a real connection to a listening socket come and go") {
    auto port = agent::runtime::pick_free_port();
    REQUIRE(port.ok());
    int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(*port));
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener, 8) == 0);
    const auto p = static_cast<std::uint16_t>(*port);
    CHECK(port_activity(p).idle());

    int client = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    auto queued = port_activity(p); // not accepted yet: in the backlog (and established)
    CHECK_FALSE(queued.idle());
    int accepted = ::accept(listener, nullptr, nullptr);
    REQUIRE(accepted >= 0);
    CHECK(port_activity(p).connections == 1);
    ::close(client);
    ::close(accepted);
    CHECK(port_activity(p).connections == 0);
    ::close(listener);
}
