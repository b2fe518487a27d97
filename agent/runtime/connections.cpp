#include <agent/runtime/connections.hpp>

#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace agent::runtime {

namespace {

constexpr std::string_view k_established = "01";
constexpr std::string_view k_syn_recv = "03";
constexpr std::string_view k_listen = "0A";

unsigned long hex(std::string_view text) {
    unsigned long value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value, 16);
    return value;
}

std::string read_all(const char* path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

PortActivity port_activity(std::string_view table, std::uint16_t port) {
    PortActivity activity;
    std::istringstream lines{std::string(table)};
    std::string line;
    std::getline(lines, line); // header
    while (std::getline(lines, line)) {
        // sl local_address rem_address st tx_queue:rx_queue ...
        std::istringstream fields(line);
        std::string sl, local, remote, state, queues;
        if (!(fields >> sl >> local >> remote >> state >> queues))
            continue;
        auto colon = local.rfind(':');
        if (colon == std::string::npos || hex(std::string_view(local).substr(colon + 1)) != port)
            continue;
        if (state == k_established || state == k_syn_recv) {
            ++activity.connections;
        } else if (state == k_listen) {
            auto split = queues.find(':');
            if (split != std::string::npos)
                activity.queued +=
                    static_cast<int>(hex(std::string_view(queues).substr(split + 1)));
        }
    }
    return activity;
}

PortActivity port_activity(std::uint16_t port) {
    PortActivity total;
    for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        auto one = port_activity(read_all(path), port);
        total.connections += one.connections;
        total.queued += one.queued;
    }
    return total;
}

} // namespace agent::runtime
