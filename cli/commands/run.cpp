// deployctl run [--release ID] [-i] [-t] [--] CMD [ARGS...]: a one-off command next to the
// app on its agent (docs/run.md), over the upgraded connection of docs/api.md ("Running a
// command"): our stdin goes as stdin frames, its stdout and stderr come back as frames, and
// deployctl exits with its status.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>
#include <common/run_frames.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <vector>

namespace cli::commands {

namespace {

using common::ErrorKind;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace run = common::run;

constexpr std::size_t k_chunk = 64 * 1024;
constexpr std::size_t k_max_queued = 1u << 20; // stop reading stdin while this much waits

struct RunOptions {
    std::string release; // empty: the PRODUCTION release
    bool interactive = false;
    bool tty = false;
    std::vector<std::string> argv;
};

// What the signal handler needs; plain globals, as only async-signal-safe code reads them.
volatile sig_atomic_t g_self_pipe = -1;  // the loop hears signals here
volatile sig_atomic_t g_raw_fd = -1;     // a terminal in raw mode, to restore before dying
volatile sig_atomic_t g_interrupts = 0;  // SIGINT/SIGTERM/SIGHUP received so far
termios g_saved_termios{};

void on_signal(int sig) {
    const int saved_errno = errno;
    if (sig != SIGWINCH) {
        if (g_raw_fd >= 0) {
            // With a terminal in raw mode Ctrl-C is a byte, so this came from elsewhere
            // (kill, the terminal closing): give the terminal back, then go.
            tcsetattr(g_raw_fd, TCSANOW, &g_saved_termios);
            _exit(128 + sig);
        }
        if (g_interrupts > 0) // the second one: at once
            _exit(128 + sig);
        g_interrupts = g_interrupts + 1;
    }
    if (g_self_pipe >= 0) {
        const auto byte = static_cast<unsigned char>(sig);
        [[maybe_unused]] auto n = ::write(g_self_pipe, &byte, 1);
    }
    errno = saved_errno;
}

// The signals deployctl run handles, and SIGPIPE ignored, for the run's lifetime.
class SignalScope {
  public:
    static constexpr int k_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};

    SignalScope() {
        if (::pipe2(m_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
            m_pipe[0] = m_pipe[1] = -1;
        g_self_pipe = m_pipe[1];
        g_interrupts = 0;
        struct sigaction action {};
        action.sa_handler = on_signal;
        sigemptyset(&action.sa_mask);
        for (std::size_t i = 0; i < std::size(k_signals); ++i)
            sigaction(k_signals[i], &action, &m_old[i]);
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        sigemptyset(&ignore.sa_mask);
        sigaction(SIGPIPE, &ignore, &m_old_pipe);
    }
    ~SignalScope() {
        for (std::size_t i = 0; i < std::size(k_signals); ++i)
            sigaction(k_signals[i], &m_old[i], nullptr);
        sigaction(SIGPIPE, &m_old_pipe, nullptr);
        g_self_pipe = -1;
        for (int fd : m_pipe)
            if (fd >= 0)
                ::close(fd);
    }
    SignalScope(const SignalScope&) = delete;
    SignalScope& operator=(const SignalScope&) = delete;

    int fd() const { return m_pipe[0]; }

  private:
    int m_pipe[2] = {-1, -1};
    struct sigaction m_old[std::size(k_signals)] {};
    struct sigaction m_old_pipe {};
};

// The local terminal in raw mode (-t) until destroyed, also when an error or an exception
// ends the run; the signal handler restores it itself before exiting.
class RawTerminal {
  public:
    explicit RawTerminal(int fd) : m_fd(fd) {
        if (tcgetattr(fd, &m_saved) != 0)
            return;
        termios raw = m_saved;
        cfmakeraw(&raw);
        g_saved_termios = m_saved;
        g_raw_fd = fd;
        if (tcsetattr(fd, TCSANOW, &raw) != 0) {
            g_raw_fd = -1;
            return;
        }
        m_active = true;
    }
    ~RawTerminal() {
        if (!m_active)
            return;
        g_raw_fd = -1;
        tcsetattr(m_fd, TCSANOW, &m_saved);
    }
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;

  private:
    int m_fd;
    termios m_saved{};
    bool m_active = false;
};

std::optional<run::WindowSize> window_size(const Context& ctx) {
    winsize size{};
    for (int fd : {ctx.fds.out, ctx.fds.in})
        if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 && size.ws_row > 0)
            return run::WindowSize{size.ws_col, size.ws_row};
    return std::nullopt;
}

// Writes all of `data` to `fd` (which may be non-blocking); false when the reader is gone.
bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd, POLLOUT, 0};
            ::poll(&p, 1, 1000);
            continue;
        }
        return false; // EPIPE and the like
    }
    return true;
}

common::Error protocol_error(std::string_view why) {
    return common::make_error(ErrorKind::internal,
                              fmt::format("the agent broke the run protocol: {}", why));
}

// One run over an open connection: frames both ways until the `exit` frame.
class Session {
  public:
    Session(Context& ctx, transport::Duplex& connection, std::string host, bool pass_stdin,
            bool tty)
        : m_ctx(ctx), m_conn(connection), m_host(std::move(host)), m_stdin_open(pass_stdin),
          m_tty(tty) {}

    common::Status run() {
        SignalScope signals;
        std::optional<RawTerminal> raw;
        if (m_tty)
            raw.emplace(m_ctx.fds.in);
        m_last_sent = Clock::now();
        std::vector<char> buffer(k_chunk);
        for (;;) {
            if (m_exit)
                return finish();
            const auto now = Clock::now();
            if (now - m_last_sent >= run::k_ping_every)
                queue(run::encode_frame(run::Frame::ping));
            flush();

            pollfd fds[3];
            nfds_t n = 0;
            fds[n++] = {m_conn.fd(), static_cast<short>(POLLIN | (m_out.empty() ? 0 : POLLOUT)), 0};
            const int signal_at = signals.fd() >= 0 ? static_cast<int>(n) : -1;
            if (signal_at >= 0)
                fds[n++] = {signals.fd(), POLLIN, 0};
            const int stdin_at =
                m_stdin_open && m_out.size() < k_max_queued ? static_cast<int>(n) : -1;
            if (stdin_at >= 0)
                fds[n++] = {m_ctx.fds.in, POLLIN, 0};
            const auto until_ping = std::chrono::duration_cast<std::chrono::milliseconds>(
                                        m_last_sent + run::k_ping_every - Clock::now())
                                        .count();
            const int timeout = m_conn.has_buffered() || m_more ? 0
                                                                : static_cast<int>(std::max<long long>(
                                                                      0, until_ping + 1));
            int ready = ::poll(fds, n, timeout);
            if (ready < 0) {
                if (errno == EINTR)
                    continue;
                return common::make_error(ErrorKind::io,
                                          fmt::format("poll: {}", std::strerror(errno)));
            }
            if (signal_at >= 0 && fds[signal_at].revents != 0)
                on_signals(signals.fd());
            if (fds[0].revents != 0 || m_conn.has_buffered() || m_more) {
                auto st = receive(buffer);
                if (!st || m_exit || m_gone)
                    return st ? finish() : st;
            }
            if (stdin_at >= 0 && fds[stdin_at].revents != 0)
                read_stdin(buffer);
        }
    }

  private:
    void queue(std::string frame) {
        m_out += frame;
        m_last_sent = Clock::now();
    }

    // Sends what the connection takes of the queue. When sending fails, the agent may have
    // sent `exit` and closed (a command that ended without reading all of its stdin): stop
    // sending and read on; the end of the connection without `exit` reports the failure.
    void flush() {
        while (!m_out.empty() && m_send_error.empty()) {
            auto sent = m_conn.send(m_out);
            if (!sent) {
                m_send_error = sent.error().message;
                break;
            }
            if (*sent == 0)
                return;
            m_out.erase(0, *sent);
        }
        if (!m_send_error.empty()) {
            m_out.clear();
            m_stdin_open = false;
        }
    }

    void read_stdin(std::vector<char>& buffer) {
        ssize_t n = ::read(m_ctx.fds.in, buffer.data(), buffer.size());
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n > 0) {
            queue(run::encode_frame(run::Frame::stdin_data,
                                    std::string_view(buffer.data(), static_cast<std::size_t>(n))));
            return;
        }
        queue(run::encode_frame(run::Frame::stdin_eof)); // end of file (or an unreadable stdin)
        m_stdin_open = false;
    }

    void on_signals(int fd) {
        unsigned char sig = 0;
        while (::read(fd, &sig, 1) == 1) {
            if (sig == SIGWINCH) {
                if (m_tty)
                    if (auto size = window_size(m_ctx))
                        queue(run::encode_resize(size->cols, size->rows));
                continue;
            }
            // Without a terminal, the first SIGINT/SIGTERM/SIGHUP goes to the command (the
            // next one ends deployctl in the handler).
            queue(run::encode_frame(run::Frame::signal,
                                    std::string_view(reinterpret_cast<const char*>(&sig), 1)));
        }
    }

    // Reads what has arrived, at most a few chunks before looking at the other inputs again.
    common::Status receive(std::vector<char>& buffer) {
        m_more = false;
        for (int round = 0; round < 16; ++round) {
            auto got = m_conn.receive(buffer.data(), buffer.size());
            if (!got)
                return lost(m_send_error.empty() ? got.error().message : m_send_error);
            if (got->eof) {
                TRY(take_frames());
                if (!m_exit)
                    return lost(m_send_error);
                return {};
            }
            if (got->size == 0)
                return {};
            m_reader.feed(std::string_view(buffer.data(), got->size));
            TRY(take_frames());
            if (m_exit || m_gone)
                return {};
        }
        m_more = true; // TLS may hold decrypted bytes the socket no longer shows
        return {};
    }

    common::Status take_frames() {
        while (auto frame = m_reader.next()) {
            switch (frame->type) {
            case run::Frame::started:
                break;
            case run::Frame::stdout_data:
            case run::Frame::stderr_data:
                output(frame->type == run::Frame::stdout_data, frame->payload);
                if (m_gone)
                    return {};
                break;
            case run::Frame::exit: {
                auto parsed = json::parse(frame->payload, nullptr, false);
                if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("status") ||
                    !parsed["status"].is_number_integer())
                    return protocol_error(
                        fmt::format("an exit frame without a status: {:.200}", frame->payload));
                output::RunExit exit;
                exit.host = m_host;
                exit.status = parsed["status"].get<int>();
                if (parsed.contains("signal") && parsed["signal"].is_number_integer())
                    exit.signal = parsed["signal"].get<int>();
                if (parsed.contains("error") && parsed["error"].is_string())
                    exit.error = parsed["error"].get<std::string>();
                m_exit = exit;
                return {};
            }
            default:
                return protocol_error(fmt::format("a frame of type 0x{:02x} from the agent",
                                                  static_cast<unsigned>(frame->type)));
            }
        }
        if (!m_reader.error().empty())
            return protocol_error(m_reader.error());
        return {};
    }

    void output(bool is_stdout, const std::string& data) {
        if (m_ctx.global.json) {
            m_ctx.out->emit(output::RunOutput{m_host, is_stdout ? "stdout" : "stderr", data});
            return;
        }
        if (!write_all(is_stdout ? m_ctx.fds.out : m_ctx.fds.err, data) && is_stdout)
            m_gone = true; // our reader went away (`| head`): end as a pipeline would
    }

    common::Status finish() {
        if (m_gone) {
            m_ctx.exit_code = 128 + SIGPIPE;
            return {};
        }
        if (m_ctx.global.json)
            m_ctx.out->emit(*m_exit);
        else if (m_exit->error)
            write_all(m_ctx.fds.err, fmt::format("error: {}\n", *m_exit->error));
        m_ctx.exit_code = m_exit->status;
        return {};
    }

    common::Error lost(const std::string& why) {
        return common::make_error(
            ErrorKind::connection,
            fmt::format("the connection to the agent at {} closed before the command ended{}{}",
                        m_host, why.empty() ? "" : ": ", why));
    }

    Context& m_ctx;
    transport::Duplex& m_conn;
    std::string m_host;
    bool m_stdin_open;
    bool m_tty;
    run::FrameReader m_reader;
    std::string m_out; // frames not yet sent
    Clock::time_point m_last_sent;
    bool m_more = false; // receive() stopped with bytes maybe left
    bool m_gone = false; // our stdout's reader went away
    std::string m_send_error; // sending failed: why
    std::optional<output::RunExit> m_exit;
};

// Without a release, the agent answers not_found when the app has no PRODUCTION release:
// say how to name one.
common::Error with_release_hint(common::Error error, const RunOptions& options) {
    if (options.release.empty() && error.kind == ErrorKind::not_found &&
        error.message.find("no PRODUCTION release") != std::string::npos &&
        error.message.find("--release") == std::string::npos)
        error.message += "; deploy it first or pass --release (`deployctl releases` lists them)";
    // An agent from before `deployctl run` has no such route.
    if (error.kind == ErrorKind::not_found && error.message.starts_with("no such endpoint"))
        error.message += " (this deploy-agent is older than `deployctl run`: upgrade it)";
    return error;
}

common::Status run_command(Context& ctx, const RunOptions& options) {
    if (options.argv.empty())
        return common::make_error(ErrorKind::usage, "run: which command? deployctl run -- CMD [ARGS...]");
    if (!options.release.empty())
        TRY(check_release_id(options.release));
    TRY_ASSIGN(auto target, resolve_target(ctx, ".", ConfigNeed::optional));
    TRY_ASSIGN(auto urls, host_urls(target));
    if (urls.empty())
        return common::make_error(ErrorKind::usage, "run: no agent to run on (--host URL)");
    const auto& url = urls.front(); // the first host of the target, or --host

    const bool stdin_terminal = ::isatty(ctx.fds.in) != 0;
    bool tty = options.tty;
    if (tty && !stdin_terminal) {
        ctx.out->emit(output::Warning{"-t: stdin is not a terminal; running without one"});
        tty = false;
    }
    const bool pass_stdin = options.interactive || tty || !stdin_terminal;
    json body{{"argv", options.argv}, {"tty", tty}, {"stdin", pass_stdin}};
    if (!options.release.empty())
        body["release"] = options.release;
    if (tty) {
        const auto size = window_size(ctx).value_or(run::WindowSize{80, 24});
        body["cols"] = size.cols;
        body["rows"] = size.rows;
        const char* term = std::getenv("TERM");
        body["term"] = term && *term ? term : "xterm";
    }

    TRY_ASSIGN(auto client, ctx.connect(url, target.ssh, target.tls));
    auto connection = client->open_run(app_path(target.app) + "/runs", body);
    if (!connection)
        return with_release_hint(connection.error(), options);
    Session session(ctx, **connection, url.base_url, pass_stdin, tty);
    auto st = session.run();
    connection->reset(); // before the client: over SSH its tunnel carries the connection
    return st;
}

} // namespace

void add_run(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<RunOptions>();
    auto* cmd = app.add_subcommand(
        "run", "Run a one-off command next to the app on its agent (a migration, a console)");
    cmd->add_option("--release", options->release,
                    "Release whose files (or image) and environment the command gets (default: "
                    "the PRODUCTION release)")
        ->type_name("RELEASE");
    cmd->add_flag("-i,--interactive", options->interactive,
                  "Pass stdin even when it is a terminal");
    cmd->add_flag("-t,--tty", options->tty,
                  "Give the command a terminal (usually -it, for a shell or a console); after "
                  "run, -t is this, not --target");
    cmd->add_option("CMD", options->argv, "The command and its arguments (after --)")
        ->type_name("ARGS");
    cmd->footer("The command runs on the first agent of the target (or --host) and deployctl "
                "exits with its status (docs/run.md).\n\nExamples:\n"
                "  deployctl run -- bin/migrate\n"
                "  deployctl run -it -- sh\n"
                "  deployctl run --release v3 -- cat VERSION\n"
                "  deployctl run -- psql < fix.sql\n");
    cmd->callback([&ctx, options] {
        ctx.command = [&ctx, options] { return run_command(ctx, *options); };
    });
}

} // namespace cli::commands
