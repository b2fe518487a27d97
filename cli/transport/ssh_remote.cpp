#include <cli/transport/ssh_remote.hpp>
#include <cli/transport/ssh_session.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <poll.h>

namespace cli::transport {

namespace {

using common::ErrorKind;

constexpr int k_wait_ms = 60'000; // no byte either way for this long: the connection is gone

class Shell final : public RemoteShell {
  public:
    Shell(SshSession session, std::string where)
        : m_ssh(std::move(session)), m_where(std::move(where)) {
        libssh2_session_set_blocking(m_ssh.get(), 0);
    }
    ~Shell() override { m_ssh.close(m_alive); }

    common::Result<RemoteResult> run(const std::string& command, std::string_view input,
                                     bool pty) override;
    const std::string& where() const override { return m_where; }

  private:
    // Waits for the socket in the direction libssh2 is blocked on.
    common::Status wait();
    common::Error lost(const std::string& what);
    template <class Call> common::Result<int> retry(Call call, const char* what);

    SshSession m_ssh;
    std::string m_where;
    bool m_alive = true;
};

common::Status Shell::wait() {
    const int directions = libssh2_session_block_directions(m_ssh.get());
    pollfd p{m_ssh.fd(), 0, 0};
    if (directions & LIBSSH2_SESSION_BLOCK_INBOUND)
        p.events |= POLLIN;
    if (directions & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        p.events |= POLLOUT;
    if (p.events == 0)
        p.events = POLLIN;
    const int ready = ::poll(&p, 1, k_wait_ms);
    if (ready == 0)
        return lost(fmt::format("no answer for {} s", k_wait_ms / 1000));
    if (ready < 0 && errno != EINTR)
        return lost(std::strerror(errno));
    return {};
}

common::Error Shell::lost(const std::string& what) {
    m_alive = false;
    return common::make_error(ErrorKind::connection,
                              fmt::format("the SSH connection to {} was lost: {}", m_where, what));
}

// Repeats a libssh2 call that answers LIBSSH2_ERROR_EAGAIN until it does something.
template <class Call> common::Result<int> Shell::retry(Call call, const char* what) {
    for (;;) {
        const int rc = call();
        if (rc != LIBSSH2_ERROR_EAGAIN) {
            if (rc < 0)
                return common::make_error(
                    ErrorKind::connection,
                    fmt::format("{} on {}: {}", what, m_where, ssh_error_message(m_ssh.get())));
            return rc;
        }
        TRY(wait());
    }
}

common::Result<RemoteResult> Shell::run(const std::string& command, std::string_view input,
                                        bool pty) {
    auto* session = m_ssh.get();
    LIBSSH2_CHANNEL* channel = nullptr;
    while (!(channel = libssh2_channel_open_session(session))) {
        if (libssh2_session_last_errno(session) != LIBSSH2_ERROR_EAGAIN)
            return lost(fmt::format("cannot open a channel: {}", ssh_error_message(session)));
        TRY(wait());
    }
    struct Free {
        LIBSSH2_CHANNEL* channel;
        ~Free() { libssh2_channel_free(channel); }
    } free_channel{channel};
    if (pty)
        TRY(retry([&] { return libssh2_channel_request_pty(channel, "dumb"); },
                  "the server refused a terminal"));
    TRY(retry([&] { return libssh2_channel_exec(channel, command.c_str()); },
              "the server refused to run a command"));

    RemoteResult result;
    std::size_t sent = 0;
    bool eof_sent = false;
    char buffer[32 * 1024];
    for (;;) {
        bool progress = false;
        while (sent < input.size()) {
            const auto n = libssh2_channel_write(channel, input.data() + sent, input.size() - sent);
            if (n == LIBSSH2_ERROR_EAGAIN)
                break;
            if (n < 0)
                return lost(fmt::format("cannot send to `{}`: {}", command,
                                        ssh_failure(session, static_cast<int>(n))));
            sent += static_cast<std::size_t>(n);
            progress = true;
        }
        if (sent == input.size() && !eof_sent) {
            const int rc = libssh2_channel_send_eof(channel);
            if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
                return lost(ssh_failure(session, rc));
            eof_sent = rc == 0;
            progress |= eof_sent;
        }
        for (int stream : {0, SSH_EXTENDED_DATA_STDERR}) {
            for (;;) {
                const auto n = libssh2_channel_read_ex(channel, stream, buffer, sizeof buffer);
                if (n == LIBSSH2_ERROR_EAGAIN || n == 0)
                    break;
                if (n < 0)
                    return lost(ssh_failure(session, static_cast<int>(n)));
                (stream == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(n));
                progress = true;
            }
        }
        if (libssh2_channel_eof(channel) == 1)
            break;
        if (!progress)
            TRY(wait());
    }
    TRY(retry([&] { return libssh2_channel_close(channel); }, "cannot close a channel"));
    TRY(retry([&] { return libssh2_channel_wait_closed(channel); }, "cannot close a channel"));
    char* signal = nullptr;
    libssh2_channel_get_exit_signal(channel, &signal, nullptr, nullptr, nullptr, nullptr, nullptr);
    result.status = signal ? -1 : libssh2_channel_get_exit_status(channel);
    if (signal)
        libssh2_free(session, signal);
    return result;
}

} // namespace

common::Result<std::unique_ptr<RemoteShell>> RemoteShell::open(SshOptions options) {
    TRY_ASSIGN(auto session, open_ssh_session(options));
    return std::unique_ptr<RemoteShell>(
        std::make_unique<Shell>(std::move(session), ssh_address(options)));
}

} // namespace cli::transport
