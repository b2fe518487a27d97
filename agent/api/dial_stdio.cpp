#include <agent/api/dial_stdio.hpp>
#include <agent/api/unix_socket.hpp>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

namespace agent::api {

namespace {

// One direction: bytes read from `from` wait in `buffer` until `to` takes them.
struct Pump {
    int from = -1;
    int to = -1;
    std::array<char, 64 * 1024> buffer{};
    std::size_t begin = 0, end = 0;
    bool input_done = false;  // `from` reached its end
    bool output_done = false; // `to` was closed (after the last byte, or on error)

    bool empty() const { return begin == end; }
    bool finished() const { return output_done; }
};

void set_nonblocking(int fd) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Ends the write side of `pump.to`: a half-close for the socket, a close for stdout.
void end_output(Pump& pump) {
    if (pump.output_done)
        return;
    pump.output_done = true;
    if (::shutdown(pump.to, SHUT_WR) != 0)
        ::close(pump.to);
}

// Moves what can move without blocking; false with `error` set on a socket error.
bool step(Pump& pump, short from_events, short to_events, std::string& error) {
    if (pump.empty() && !pump.input_done && (from_events & (POLLIN | POLLHUP | POLLERR))) {
        const auto n = ::read(pump.from, pump.buffer.data(), pump.buffer.size());
        if (n > 0) {
            pump.begin = 0;
            pump.end = static_cast<std::size_t>(n);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            if (n < 0)
                error = std::strerror(errno);
            pump.input_done = true;
        }
    }
    if (!pump.empty() && (to_events & (POLLOUT | POLLERR | POLLHUP))) {
        const auto n = ::write(pump.to, pump.buffer.data() + pump.begin, pump.end - pump.begin);
        if (n > 0) {
            pump.begin += static_cast<std::size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            // The reader went away: nothing more can go this way.
            pump.begin = pump.end = 0;
            pump.input_done = true;
            end_output(pump);
        }
    }
    if (pump.empty() && pump.input_done)
        end_output(pump);
    return error.empty();
}

} // namespace

int dial_stdio(const std::filesystem::path& socket) {
    std::signal(SIGPIPE, SIG_IGN);
    auto fd = connect_unix(socket);
    if (!fd) {
        std::fprintf(stderr, "deploy-agent dial-stdio: %s (is deploy-agent serve running?)\n",
                     fd.error().message.c_str());
        return 1;
    }
    const int sock = *fd;
    for (int f : {STDIN_FILENO, STDOUT_FILENO, sock})
        set_nonblocking(f);
    Pump up{STDIN_FILENO, sock};
    Pump down{sock, STDOUT_FILENO};
    std::string error;
    while (!up.finished() || !down.finished()) {
        // A descriptor with nothing to wait for is left out (-1): its hang-up
        // would wake poll() again and again while the other side is slow.
        const auto want = [](int f, bool wanted, short events) {
            return pollfd{wanted ? f : -1, events, 0};
        };
        std::array<pollfd, 4> fds{{
            want(STDIN_FILENO, up.empty() && !up.input_done, POLLIN),
            want(sock, !up.empty() && !up.output_done, POLLOUT),
            want(sock, down.empty() && !down.input_done, POLLIN),
            want(STDOUT_FILENO, !down.empty() && !down.output_done, POLLOUT),
        }};
        if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) {
            error = std::strerror(errno);
            break;
        }
        if (!step(up, fds[0].revents, fds[1].revents, error) ||
            !step(down, fds[2].revents, fds[3].revents, error))
            break;
    }
    ::close(sock);
    if (!error.empty()) {
        std::fprintf(stderr, "deploy-agent dial-stdio: %s: %s\n", socket.c_str(), error.c_str());
        return 1;
    }
    return 0;
}

} // namespace agent::api
