// The frame relay of an upgraded connection (run_session.hpp).
#include <agent/api/run_session.hpp>
#include <common/log.hpp>
#include <common/run_frames.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <poll.h>
#include <unistd.h>

namespace agent::api {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace run = common::run;

// Input held for a command that does not read it, before the client's
// frames wait.
constexpr std::size_t k_max_held_input = 1u << 20;
// After the command exited, how long its output may still take to arrive
// (from what it left running, or bytes in flight).
constexpr auto k_output_grace = std::chrono::seconds(2);

bool allowed_signal(int signal) {
    switch (signal) {
    case SIGHUP:
    case SIGINT:
    case SIGQUIT:
    case SIGTERM:
    case SIGKILL:
    case SIGUSR1:
    case SIGUSR2:
    case SIGWINCH:
    case SIGCONT:
    case SIGTSTP:
        return true;
    default:
        return false;
    }
}

// One run: the command's descriptors on one side, the client's frames on
// the other, on the request's own thread.
class RunSession {
  public:
    RunSession(Duplex& client, runtime::RunningOneOff& command, std::string label)
        : m_client(client), m_command(command), m_label(std::move(label)) {}

    // Until the command has exited and its status was sent, or the client
    // is gone (the command is then ended).
    void run() {
        char buffer[65536];
        while (true) {
            if (Clock::now() - m_heard > run::k_silence)
                return gone("sent nothing for 20s");
            pollfd fds[5];
            nfds_t n = 0;
            int client_at = -1, out_at = -1, err_at = -1, in_at = -1;
            if (m_command.exited >= 0)
                fds[n++] = {m_command.exited, POLLIN, 0}; // poll_exit() below looks
            if (m_held.size() < k_max_held_input) {
                client_at = static_cast<int>(n);
                fds[n++] = {m_client.fd(), POLLIN, 0};
            }
            if (m_command.output >= 0) {
                out_at = static_cast<int>(n);
                fds[n++] = {m_command.output, POLLIN, 0};
            }
            if (m_command.error >= 0) {
                err_at = static_cast<int>(n);
                fds[n++] = {m_command.error, POLLIN, 0};
            }
            if (!m_held.empty() && m_command.input >= 0) {
                in_at = static_cast<int>(n);
                fds[n++] = {m_command.input, POLLOUT, 0};
            }
            const bool ready_now = client_at >= 0 && m_client.pending();
            if (::poll(fds, n, ready_now ? 0 : 200) < 0 && errno != EINTR)
                return gone(std::string("poll: ") + std::strerror(errno));
            const auto is_set = [&](int at) { return at >= 0 && fds[at].revents != 0; };
            if (ready_now || is_set(client_at)) {
                const long got = m_client.read(buffer, sizeof buffer, std::chrono::milliseconds(0));
                if (got == 0 || got == -1)
                    return gone(got == 0 ? "closed the connection" : "connection failed");
                if (got > 0) {
                    m_heard = Clock::now();
                    m_frames.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
                    if (!take_frames())
                        return;
                }
            }
            if (is_set(out_at) && !pump(m_command.output, run::Frame::stdout_data))
                return;
            if (is_set(err_at) && !pump(m_command.error, run::Frame::stderr_data))
                return;
            if (is_set(in_at))
                feed_input();
            if (auto exited = m_command.poll_exit())
                return finish(*exited);
        }
    }

  private:
    // Handles the frames that have arrived; false when the run must end.
    bool take_frames() {
        while (auto frame = m_frames.next()) {
            switch (frame->type) {
            case run::Frame::stdin_data:
                if (m_command.input >= 0 && !m_input_closed)
                    m_held += frame->payload;
                break;
            case run::Frame::stdin_eof:
                m_input_closed = true;
                break;
            case run::Frame::resize:
                if (auto size = run::decode_resize(frame->payload);
                    size && size->cols && size->rows)
                    m_command.resize(size->cols, size->rows);
                break;
            case run::Frame::signal:
                if (frame->payload.size() == 1 &&
                    allowed_signal(static_cast<unsigned char>(frame->payload[0])))
                    m_command.signal_group(static_cast<unsigned char>(frame->payload[0]));
                break;
            case run::Frame::ping:
                break;
            default:
                return protocol_error(fmt::format("a frame of type 0x{:02x} from the client",
                                                  static_cast<unsigned>(frame->type)));
            }
        }
        if (!m_frames.error().empty())
            return protocol_error(m_frames.error());
        feed_input();
        return true;
    }

    void feed_input() {
        while (!m_held.empty() && m_command.input >= 0) {
            const auto n = ::write(m_command.input, m_held.data(), m_held.size());
            if (n > 0) {
                m_held.erase(0, static_cast<std::size_t>(n));
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            m_held.clear(); // EPIPE: the command closed its stdin
            m_command.close_input();
        }
        if (m_input_closed && m_held.empty())
            m_command.close_input();
    }

    // Reads what one of the command's descriptors has and sends it on; false
    // when the client is gone.
    bool pump(int& fd, run::Frame type) {
        char buffer[65536];
        const auto n = ::read(fd, buffer, sizeof buffer);
        if (n > 0)
            return send(
                run::encode_frame(type, std::string_view(buffer, static_cast<std::size_t>(n))));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        // End of file, or EIO: a terminal nobody holds any more. The same
        // descriptor may be input too (a terminal): it stays open until the end.
        if (fd != m_command.input)
            ::close(fd);
        fd = -1;
        return true;
    }

    bool send(const std::string& frame) {
        if (m_client.write(frame))
            return true;
        gone("stopped reading");
        return false;
    }

    // The command exited: the rest of its output, then its status.
    void finish(runtime::RunningOneOff::Exit exited) {
        const auto until = Clock::now() + k_output_grace;
        while ((m_command.output >= 0 || m_command.error >= 0) && Clock::now() < until) {
            pollfd fds[2];
            nfds_t n = 0;
            for (int fd : {m_command.output, m_command.error})
                if (fd >= 0)
                    fds[n++] = {fd, POLLIN, 0};
            if (::poll(fds, n, 100) <= 0)
                break;
            if (m_command.output >= 0 && !pump(m_command.output, run::Frame::stdout_data))
                return;
            if (m_command.error >= 0 && !pump(m_command.error, run::Frame::stderr_data))
                return;
        }
        json status = {{"status", exited.status}};
        if (exited.signal)
            status["signal"] = exited.signal;
        send(run::encode_frame(run::Frame::exit, status.dump()));
    }

    void gone(const std::string& why) {
        const auto ended = m_command.end(k_end_grace);
        common::log_info(fmt::format("{}: the client {}; the command was ended (status {})",
                                     m_label, why, ended.status));
    }

    bool protocol_error(const std::string& what) {
        common::log_warn(fmt::format("{}: protocol error: {}; ending the command", m_label, what));
        m_command.end(k_end_grace);
        return false;
    }

    Duplex& m_client;
    runtime::RunningOneOff& m_command;
    std::string m_label;
    run::FrameReader m_frames;
    std::string m_held; // input the command has not read yet
    bool m_input_closed = false;
    Clock::time_point m_heard = Clock::now();
};

} // namespace

void relay_frames(Duplex& client, runtime::RunningOneOff& command, const std::string& label) {
    RunSession(client, command, label).run();
}

} // namespace agent::api
