#include <cli/transport/ssh_tunnel.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <mutex>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace cli::transport {

namespace {

using common::ErrorKind;

constexpr std::size_t k_buffer_size = 64 * 1024;
constexpr std::size_t k_stderr_kept = 4096;

// One direction of one connection: a fixed buffer, filled only when it has room.
struct Buffer {
    std::vector<char> bytes = std::vector<char>(k_buffer_size);
    std::size_t begin = 0, end = 0;

    bool empty() const { return begin == end; }
    std::size_t size() const { return end - begin; }
    std::size_t room() const { return bytes.size() - end; }
    const char* data() const { return bytes.data() + begin; }
    char* space() { return bytes.data() + end; }
    void filled(std::size_t n) { end += n; }
    void consumed(std::size_t n) {
        begin += n;
        if (begin == end)
            begin = end = 0;
    }
};

enum class Stage { opening, starting, relaying, closing, done };

// A local connection (from libcurl) and the channel serving it.
struct Pipe {
    int fd = -1;
    LIBSSH2_CHANNEL* channel = nullptr;
    Stage stage = Stage::opening;
    bool open_started = false; // its channel's opening is under way (Impl::opening)
    bool direct = false;       // a direct-streamlocal channel: no command, no exit status
    int closing_step = 0;
    Buffer up;               // local -> channel
    Buffer down;             // channel -> local
    bool local_eof = false;  // the local side sends no more
    bool local_gone = false; // the local side takes no more
    bool eof_sent = false;   // the channel was told
    bool remote_eof = false; // the agent command sends no more
    std::string errors;      // the command's stderr (its end)
};

bool is_channel_error(int rc) {
    switch (rc) {
    case LIBSSH2_ERROR_CHANNEL_FAILURE:
    case LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED:
    case LIBSSH2_ERROR_CHANNEL_UNKNOWN:
    case LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED:
    case LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED:
    case LIBSSH2_ERROR_CHANNEL_CLOSED:
    case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
    case LIBSSH2_ERROR_REQUEST_DENIED:
        return true;
    default:
        return false;
    }
}

// The type-specific part of a direct-streamlocal@openssh.com channel open
// (OpenSSH's PROTOCOL, 2.4): the socket path, then a reserved string and uint32.
std::string streamlocal_request(const std::string& socket) {
    std::string message;
    const auto put_u32 = [&](std::size_t value) {
        for (int shift = 24; shift >= 0; shift -= 8)
            message.push_back(static_cast<char>((value >> shift) & 0xff));
    };
    put_u32(socket.size());
    message += socket;
    put_u32(0); // reserved string: empty
    put_u32(0); // reserved uint32
    return message;
}

constexpr std::string_view k_streamlocal = "direct-streamlocal@openssh.com";

// What a pipe's channel reaches, in errors.
const char* far_end(const Pipe& p) {
    return p.direct ? "the agent" : "the agent command";
}

std::string trimmed(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
        text.pop_back();
    return text;
}

} // namespace

struct SshTunnel::Impl {
    explicit Impl(SshSession session) : ssh(std::move(session)) {}

    SshSession ssh;
    std::string command;        // empty: a bastion's relay (one forward, no command to run)
    std::string agent_socket;   // the server's socket for direct-streamlocal ("": none)
    std::string direct_request; // streamlocal_request(agent_socket)
    std::string direct_refusal; // why the server refused one ("": it did not)
    bool opening = false;       // a channel open is under way (Pipe::open_started)
    std::string where;
    int keepalive_s = 15;
    std::filesystem::path dir; // the private 0700 folder
    std::string socket;
    int listen_fd = -1;
    std::array<int, 2> wake{-1, -1};
    std::vector<Pipe> pipes;
    bool lost_connection = false;
    bool rdhup_seen = false;
    mutable std::mutex mutex;
    std::optional<common::Error> failure; // under `mutex`
    std::thread thread;

    ~Impl();
    common::Status listen();
    void run();
    bool accept_new();
    bool step(Pipe& p);
    bool open_channel(Pipe& p);
    bool relay(Pipe& p);
    bool relay_down(Pipe& p);
    bool finish(Pipe& p);
    bool fail(Pipe& p, int rc, std::string_view what);
    void record(common::Error error);
    void lose(const std::string& why);
    std::vector<pollfd> poll_set() const;
    void close_all();
};

SshTunnel::Impl::~Impl() {
    for (int fd : {listen_fd, wake[0], wake[1]})
        if (fd >= 0)
            ::close(fd);
    std::error_code ec;
    if (!dir.empty())
        std::filesystem::remove_all(dir, ec);
}

common::Status SshTunnel::Impl::listen() {
    const char* tmp = std::getenv("TMPDIR");
    std::string base = tmp && *tmp ? tmp : "/tmp";
    if (base.size() > 60) // sun_path holds 108 bytes
        base = "/tmp";
    std::string templ = base + "/deployctl-ssh.XXXXXX";
    if (!::mkdtemp(templ.data())) // mkdtemp makes it 0700
        return common::make_error(ErrorKind::io, fmt::format("cannot create a folder in {}: {}",
                                                             base, std::strerror(errno)));
    dir = templ;
    socket = templ + "/agent.sock";
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, socket.c_str(), socket.size() + 1);
    listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd < 0 ||
        ::bind(listen_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listen_fd, 16) != 0 || ::pipe2(wake.data(), O_CLOEXEC | O_NONBLOCK) != 0)
        return common::make_error(
            ErrorKind::io, fmt::format("cannot listen on {}: {}", socket, std::strerror(errno)));
    return {};
}

void SshTunnel::Impl::record(common::Error error) {
    std::lock_guard lock(mutex);
    if (!failure)
        failure = std::move(error);
}

// The session is unusable: say why, then close every local connection.
void SshTunnel::Impl::lose(const std::string& why) {
    record(common::make_error(ErrorKind::connection,
                              fmt::format("the SSH connection to {} was lost: {}", where, why)));
    lost_connection = true;
}

bool SshTunnel::Impl::fail(Pipe& p, int rc, std::string_view what) {
    auto* session = ssh.get();
    if (const auto why = ssh_failure(session, rc); why == k_ssh_server_gone) {
        lose(why);
        return true;
    } else if (!is_channel_error(rc)) {
        lose(fmt::format("{}: {}", what, why));
        return true;
    }
    record(common::make_error(ErrorKind::connection, fmt::format("{} on {}: {}", what, where,
                                                                 ssh_error_message(session))));
    if (p.channel)
        libssh2_channel_free(p.channel); // best effort; the session frees the rest
    p.channel = nullptr;
    p.stage = Stage::done;
    return true;
}

bool SshTunnel::Impl::accept_new() {
    bool progress = false;
    for (;;) {
        const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return progress;
        pipes.push_back(Pipe{});
        pipes.back().fd = fd;
        progress = true;
    }
}

// A direct-streamlocal channel to the agent's socket while the server grants them;
// once it has refused one (AllowStreamLocalForwarding no, a `restrict`ed key, no such
// socket, no access to it), a session channel for the agent command, which says
// what is wrong if something is. libssh2 opens one channel at a time (an open
// called while another is under way would finish that one): the others wait.
bool SshTunnel::Impl::open_channel(Pipe& p) {
    if (opening && !p.open_started)
        return false;
    auto* session = ssh.get();
    const bool direct = !agent_socket.empty() && direct_refusal.empty();
    p.open_started = opening = true;
    p.channel = direct
                    ? libssh2_channel_open_ex(session, k_streamlocal.data(),
                                              static_cast<unsigned>(k_streamlocal.size()),
                                              LIBSSH2_CHANNEL_WINDOW_DEFAULT,
                                              LIBSSH2_CHANNEL_PACKET_DEFAULT, direct_request.data(),
                                              static_cast<unsigned>(direct_request.size()))
                    : libssh2_channel_open_session(session);
    const int rc = p.channel ? 0 : libssh2_session_last_errno(session);
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return false;
    p.open_started = opening = false;
    if (direct && rc == LIBSSH2_ERROR_CHANNEL_FAILURE) {
        direct_refusal = ssh_error_message(session);
        if (direct_refusal.empty())
            direct_refusal = "refused";
        return true; // this pipe opens a session channel next
    }
    if (rc != 0)
        return fail(p, rc,
                    direct ? "cannot open an SSH channel to the agent's socket"
                           : "cannot open an SSH channel");
    p.direct = direct;
    p.stage = direct ? Stage::relaying : Stage::starting;
    return true;
}

bool SshTunnel::Impl::step(Pipe& p) {
    switch (p.stage) {
    case Stage::opening:
        return open_channel(p);
    case Stage::starting: {
        const int rc = libssh2_channel_exec(p.channel, command.c_str());
        if (rc == LIBSSH2_ERROR_EAGAIN)
            return false;
        if (rc < 0)
            return fail(p, rc, "the server refused to run the agent command");
        p.stage = Stage::relaying;
        return true;
    }
    case Stage::relaying:
        return relay(p);
    case Stage::closing:
        return finish(p);
    case Stage::done:
        return false;
    }
    return false;
}

bool SshTunnel::Impl::relay(Pipe& p) {
    bool progress = false;
    if (!p.local_eof && p.up.room() > 0) {
        const auto n = ::read(p.fd, p.up.space(), p.up.room());
        if (n > 0) {
            p.up.filled(static_cast<std::size_t>(n));
            progress = true;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            p.local_eof = true;
            progress = true;
        }
    }
    while (!p.up.empty()) {
        const auto rc = libssh2_channel_write(p.channel, p.up.data(), p.up.size());
        if (rc == LIBSSH2_ERROR_EAGAIN)
            break;
        if (rc < 0)
            return fail(p, static_cast<int>(rc), fmt::format("cannot send to {}", far_end(p)));
        p.up.consumed(static_cast<std::size_t>(rc));
        progress = true;
    }
    if (p.local_eof && p.up.empty() && !p.eof_sent) {
        const int rc = libssh2_channel_send_eof(p.channel);
        if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
            return fail(p, rc, fmt::format("cannot send to {}", far_end(p)));
        p.eof_sent = rc == 0;
        progress |= p.eof_sent;
    }
    return relay_down(p) || progress;
}

bool SshTunnel::Impl::relay_down(Pipe& p) {
    bool progress = false;
    while (!p.remote_eof && p.down.room() > 0) {
        const auto rc = libssh2_channel_read(p.channel, p.down.space(), p.down.room());
        if (rc > 0) {
            p.down.filled(static_cast<std::size_t>(rc));
            progress = true;
            continue;
        }
        if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
            return fail(p, static_cast<int>(rc), fmt::format("cannot read from {}", far_end(p)));
        if (libssh2_channel_eof(p.channel) == 1) {
            p.remote_eof = true;
            progress = true;
        }
        break;
    }
    char errors[1024];
    for (ssize_t n; (n = libssh2_channel_read_stderr(p.channel, errors, sizeof errors)) > 0;) {
        p.errors.append(errors, static_cast<std::size_t>(n));
        if (p.errors.size() > k_stderr_kept)
            p.errors.erase(0, p.errors.size() - k_stderr_kept);
        progress = true;
    }
    while (!p.down.empty()) {
        if (p.local_gone) {
            p.down.consumed(p.down.size()); // nobody to give it to
            break;
        }
        const auto n = ::send(p.fd, p.down.data(), p.down.size(), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n < 0)
            p.local_gone = true;
        else
            p.down.consumed(static_cast<std::size_t>(n));
        progress = true;
    }
    if (p.remote_eof && p.down.empty()) {
        p.stage = Stage::closing;
        progress = true;
    }
    return progress;
}

// The command has said all it will: wait for its exit status, then close.
bool SshTunnel::Impl::finish(Pipe& p) {
    int rc = 0;
    if (p.closing_step == 0)
        rc = libssh2_channel_wait_closed(p.channel);
    else if (p.closing_step == 1)
        rc = libssh2_channel_close(p.channel);
    else
        rc = libssh2_channel_free(p.channel);
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return false;
    if (rc < 0 && !is_channel_error(rc)) {
        lose(ssh_failure(ssh.get(), rc));
        return true;
    }
    if (p.closing_step == 0 && !command.empty() && !p.direct) {
        const int status = libssh2_channel_get_exit_status(p.channel);
        if (status != 0)
            record(common::make_error(
                ErrorKind::connection,
                fmt::format("on {}, the agent command `{}` exited with status {}{}{}", where,
                            command, status, p.errors.empty() ? "" : ": ", trimmed(p.errors)) +
                    (status == 127 ? " (set agent_command under [targets.NAME] in deploy.toml "
                                     "to where deploy-agent is on that server)"
                                   : "") +
                    (direct_refusal.empty()
                         ? ""
                         : fmt::format("; the server had refused a channel to the agent's "
                                       "socket {} ({})",
                                       agent_socket, direct_refusal))));
    }
    if (++p.closing_step == 3) {
        p.channel = nullptr;
        p.stage = Stage::done;
    }
    return true;
}

std::vector<pollfd> SshTunnel::Impl::poll_set() const {
    std::vector<pollfd> fds;
    fds.push_back({wake[0], POLLIN, 0});
    fds.push_back({listen_fd, POLLIN, 0});
    auto* session = ssh.get();
    const int blocked = libssh2_session_block_directions(session);
    bool want_in = (blocked & LIBSSH2_SESSION_BLOCK_INBOUND) != 0;
    for (const auto& p : pipes) {
        const bool relaying = p.stage == Stage::relaying;
        want_in = want_in || !relaying || !p.up.empty() || (!p.remote_eof && p.down.room() > 0);
        short events = 0;
        if (relaying && !p.local_eof && p.up.room() > 0)
            events |= POLLIN;
        if (!p.down.empty() && !p.local_gone)
            events |= POLLOUT;
        fds.push_back({events ? p.fd : -1, events, 0});
    }
    short events = want_in && !pipes.empty() ? POLLIN : 0;
    if (blocked & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        events |= POLLOUT;
    if (!rdhup_seen)
        events |= POLLRDHUP;
    fds.push_back({ssh.fd(), events, 0});
    return fds;
}

void SshTunnel::Impl::run() {
    auto* session = ssh.get();
    libssh2_session_set_blocking(session, 0);
    libssh2_keepalive_config(session, 0, static_cast<unsigned>(keepalive_s));
    int quiet_passes = 0;
    while (!lost_connection) {
        bool progress = accept_new();
        for (auto& p : pipes)
            if (!lost_connection)
                progress = step(p) || progress;
        std::erase_if(pipes, [](Pipe& p) {
            if (p.stage != Stage::done)
                return false;
            ::close(p.fd);
            return true;
        });
        int next_keepalive = keepalive_s;
        if (keepalive_s > 0)
            if (const int rc = libssh2_keepalive_send(session, &next_keepalive);
                rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
                lose(ssh_failure(session, rc));
        // A libssh2 call may have queued data for a channel handled before it
        // in this pass: go round once more before waiting.
        if (lost_connection || progress || ++quiet_passes < 2) {
            if (progress)
                quiet_passes = 0;
            continue;
        }
        quiet_passes = 0;
        auto fds = poll_set();
        const int timeout_ms = keepalive_s > 0 ? std::max(next_keepalive, 1) * 1000 : -1;
        if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
            lose(std::strerror(errno));
            break;
        }
        if (fds.front().revents)
            break; // the client is done
        const auto& server = fds.back();
        if (server.revents & (POLLHUP | POLLERR) || (pipes.empty() && server.revents & POLLRDHUP))
            lose("the server closed the connection");
        rdhup_seen = rdhup_seen || (server.revents & POLLRDHUP);
    }
    close_all();
}

void SshTunnel::Impl::close_all() {
    for (auto& p : pipes)
        ::close(p.fd); // the session frees the channels
    pipes.clear();
    if (listen_fd >= 0)
        ::close(listen_fd);
    listen_fd = -1;
    ssh.close(!lost_connection);
}

SshTunnel::SshTunnel(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

SshTunnel::~SshTunnel() {
    if (m_impl->thread.joinable()) {
        [[maybe_unused]] auto n = ::write(m_impl->wake[1], "x", 1);
        m_impl->thread.join();
    }
}

common::Result<std::unique_ptr<SshTunnel>> SshTunnel::start(SshSession session,
                                                            std::string command_line,
                                                            std::string agent_socket,
                                                            std::string where, int keepalive_s) {
    auto impl = std::make_unique<Impl>(std::move(session));
    impl->command = std::move(command_line);
    impl->direct_request = streamlocal_request(agent_socket);
    impl->agent_socket = std::move(agent_socket);
    impl->where = std::move(where);
    impl->keepalive_s = keepalive_s;
    if (auto ok = impl->listen(); !ok)
        return ok.error();
    auto* raw = impl.get();
    impl->thread = std::thread([raw] { raw->run(); });
    return std::unique_ptr<SshTunnel>(new SshTunnel(std::move(impl)));
}

common::Result<std::unique_ptr<SshTunnel>> SshTunnel::relay(SshSession session,
                                                            LIBSSH2_CHANNEL* channel, int fd,
                                                            std::string where, int keepalive_s) {
    auto impl = std::make_unique<Impl>(std::move(session));
    impl->where = std::move(where);
    impl->keepalive_s = keepalive_s;
    if (::pipe2(impl->wake.data(), O_CLOEXEC | O_NONBLOCK) != 0) {
        ::close(fd);
        return common::make_error(ErrorKind::io,
                                  fmt::format("cannot make a pipe: {}", std::strerror(errno)));
    }
    Pipe pipe;
    pipe.fd = fd;
    pipe.channel = channel;
    pipe.stage = Stage::relaying;
    impl->pipes.push_back(std::move(pipe));
    auto* raw = impl.get();
    impl->thread = std::thread([raw] { raw->run(); });
    return std::unique_ptr<SshTunnel>(new SshTunnel(std::move(impl)));
}

const std::string& SshTunnel::socket_path() const {
    return m_impl->socket;
}

std::optional<common::Error> SshTunnel::failure() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->failure;
}

} // namespace cli::transport
