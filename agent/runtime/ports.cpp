#include <agent/runtime/ports.hpp>
#include <common/fs.hpp>
#include <common/number.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <random>
#include <sys/socket.h>
#include <unistd.h>

namespace agent::runtime {
namespace {

using common::ErrorKind;
using common::make_error;
using Clock = std::chrono::steady_clock;

// Ports handed out within this long are not handed out again: the app given
// one may not listen on it yet.
constexpr auto k_reserved_for = std::chrono::minutes(1);

struct Picks {
    std::mutex mutex;
    std::map<int, Clock::time_point> recent;
    std::mt19937 random{std::random_device{}()};
};

Picks& picks() {
    static Picks state;
    return state;
}

// bind() of 0.0.0.0:PORT: EADDRINUSE when any socket holds the port on any
// address. 0 when it could bind, else the errno.
int try_bind(int port, bool reuse) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    if (reuse) {
        const int on = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    const int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

} // namespace

std::string PortRange::text() const {
    return std::to_string(low) + "-" + std::to_string(high);
}

common::Result<PortRange> parse_port_range(std::string_view text) {
    const auto bad = [&] {
        return make_error(ErrorKind::usage,
                          "app_ports must be \"LOW-HIGH\" with 1024 <= LOW <= HIGH <= 65535, "
                          "e.g. \"10000-19999\" (got \"" +
                              std::string(text) + "\")");
    };
    const auto dash = text.find('-');
    if (dash == std::string_view::npos)
        return bad();
    const auto low = common::parse_whole_number<int>(text.substr(0, dash));
    const auto high = common::parse_whole_number<int>(text.substr(dash + 1));
    if (!low || !high || *low < 1024 || *low > *high || *high > 65535)
        return bad();
    return PortRange{*low, *high};
}

std::optional<PortRange> parse_ephemeral_range(std::string_view text) {
    const auto skip = [&](std::size_t at, bool space) {
        while (at < text.size() &&
               ((text[at] == ' ' || text[at] == '\t' || text[at] == '\n') == space))
            ++at;
        return at;
    };
    const auto first = skip(0, true);
    const auto first_end = skip(first, false);
    const auto second = skip(first_end, true);
    const auto second_end = skip(second, false);
    const auto low = common::parse_whole_number<int>(text.substr(first, first_end - first));
    const auto high = common::parse_whole_number<int>(text.substr(second, second_end - second));
    if (!low || !high || *low > *high)
        return std::nullopt;
    return PortRange{*low, *high};
}

std::optional<PortRange> ephemeral_port_range() {
    auto text = common::read_file("/proc/sys/net/ipv4/ip_local_port_range");
    if (!text)
        return std::nullopt;
    return parse_ephemeral_range(*text);
}

common::Result<int> pick_free_port(const PortRange& range) {
    auto& state = picks();
    std::lock_guard lock(state.mutex);
    const auto now = Clock::now();
    std::erase_if(state.recent,
                  [&](const auto& pick) { return now - pick.second > k_reserved_for; });
    const int size = range.high - range.low + 1;
    const int start = std::uniform_int_distribution<int>(0, size - 1)(state.random);
    int last_error = 0;
    for (int i = 0; i < size; ++i) {
        const int port = range.low + (start + i) % size;
        if (state.recent.contains(port))
            continue;
        const int error = try_bind(port, false);
        if (error == 0) {
            state.recent.emplace(port, now);
            return port;
        }
        if (error != EADDRINUSE && error != EACCES)
            return make_error(ErrorKind::io, std::string("cannot find a free port: bind: ") +
                                                 std::strerror(error));
        last_error = error;
    }
    return make_error(ErrorKind::io, "no free port in app_ports " + range.text() +
                                         " (every one is in use" +
                                         (last_error == EACCES ? ", or not ours to bind" : "") +
                                         "): widen it in agent.toml");
}

common::Result<int> pick_free_port() {
    return pick_free_port(PortRange{});
}

bool port_taken(int port) {
    return try_bind(port, true) == EADDRINUSE;
}

} // namespace agent::runtime
