// agent/runtime/ports: the ports apps are given, apart from the ephemeral range.
#include <agent/runtime/ports.hpp>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <set>
#include <sys/socket.h>
#include <unistd.h>

using namespace agent::runtime;

namespace {

// A socket listening on ADDRESS:PORT (0: any free port); -1 if it cannot.
int listen_on(in_addr_t address, int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(address);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int port_of(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
}

} // namespace

TEST_CASE("app_ports: LOW-HIGH from 1024 to 65535") {
    auto range = parse_port_range("10000-19999");
    REQUIRE(range.ok());
    CHECK(range->low == 10000);
    CHECK(range->high == 19999);
    CHECK(range->text() == "10000-19999");
    CHECK(parse_port_range("1024-1024").ok());
    for (const char* bad : {"", "10000", "-1", "1023-2000", "3000-2000", "1024-65536", "a-b",
                            "1024 - 2048", "1024-2048x"}) {
        auto parsed = parse_port_range(bad);
        REQUIRE_FALSE(parsed.ok());
        CHECK(parsed.error().message.find("app_ports must be") != std::string::npos);
    }
}

TEST_CASE("the kernel's ephemeral range is read from ip_local_port_range's text") {
    auto range = parse_ephemeral_range("32768\t60999\n");
    REQUIRE(range.has_value());
    CHECK(range->low == 32768);
    CHECK(range->high == 60999);
    CHECK_FALSE(parse_ephemeral_range("").has_value());
    CHECK_FALSE(parse_ephemeral_range("32768").has_value());
    CHECK_FALSE(parse_ephemeral_range("60999 32768").has_value());
    // The default app range stays out of Linux's default ephemeral range.
    CHECK_FALSE(PortRange{}.overlaps(*range));
    CHECK(PortRange{30000, 32768}.overlaps(*range));
    CHECK(PortRange{60999, 65535}.overlaps(*range));
    CHECK_FALSE(PortRange{61000, 65535}.overlaps(*range));
    // This machine's, when it can be read, is well formed.
    if (auto here = ephemeral_port_range())
        CHECK(here->low <= here->high);
}

TEST_CASE("a picked port is in the range, free, and not handed out twice within a minute") {
    // A small range next to a listening socket: its port is never picked.
    const int held = listen_on(INADDR_LOOPBACK, 0);
    REQUIRE(held >= 0);
    const int port = port_of(held);
    const PortRange range{port, port + 3 <= 65535 ? port + 3 : port};
    std::set<int> picked;
    for (int i = 0; i < 3; ++i) {
        auto next = pick_free_port(range);
        if (!next.ok()) // another program holds one of the range's other ports
            break;
        CHECK(*next != port);
        CHECK(*next >= range.low);
        CHECK(*next <= range.high);
        CHECK(picked.insert(*next).second); // never the same one twice
    }
    // Every other port of the range handed out (or held by someone): none left.
    auto none = pick_free_port(range);
    REQUIRE_FALSE(none.ok());
    CHECK(none.error().message.find("no free port in app_ports " + range.text()) !=
          std::string::npos);
    close(held);
}

TEST_CASE("a port is taken while another socket listens on it, on any address") {
    const int held = listen_on(INADDR_LOOPBACK, 0);
    REQUIRE(held >= 0);
    const int port = port_of(held);
    CHECK(port_taken(port));
    close(held);
    CHECK_FALSE(port_taken(port));
    // The default range's picks are in it.
    auto picked = pick_free_port();
    REQUIRE(picked.ok());
    CHECK(*picked >= 10000);
    CHECK(*picked <= 19999);
}
