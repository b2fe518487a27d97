// POST /v1/apps/{app}/runs: deployctl run (docs/api.md, "Running a command").
// The request is answered 101 and the connection then carries frames
// (common/run_frames.hpp) between the client and the command: its input,
// output and exit status, window sizes, signals and pings.
#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/runtime/one_off.hpp>
#include <common/command_line.hpp>
#include <common/log.hpp>
#include <common/run_frames.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <csignal>
#include <poll.h>
#include <unistd.h>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace run = common::run;

constexpr std::size_t k_max_args = 4096;
constexpr std::size_t k_max_argv_bytes = 128 * 1024;
// A client that sends no frame (it pings every 5 s) for this long is gone.
constexpr auto k_silence = std::chrono::seconds(20);
// Input held for a command that does not read it, before the client's
// frames wait.
constexpr std::size_t k_max_held_input = 1u << 20;
// After the command exited, how long its output may still take to arrive
// (from what it left running, or bytes in flight).
constexpr auto k_output_grace = std::chrono::seconds(2);
constexpr auto k_end_grace = std::chrono::seconds(3);

struct Parsed {
    OneOffRequest request;
    runtime::OneOffIo io;
};

common::Result<Parsed> parse_run(const Request& request, const std::string& app) {
    auto body = parse_json_body(request, false);
    if (!body)
        return body.error();
    if (!body->is_object())
        return make_error(ErrorKind::bad_request, R"(expected {"argv": ["command", ...]})");
    Parsed parsed;
    parsed.request.app = app;
    const auto argv = body->find("argv");
    if (argv == body->end() || !argv->is_array() || argv->empty())
        return make_error(ErrorKind::bad_request,
                          "\"argv\" must be a non-empty array of strings: the command to run");
    if (argv->size() > k_max_args)
        return make_error(ErrorKind::bad_request,
                          fmt::format("\"argv\" has more than {} arguments", k_max_args));
    std::size_t bytes = 0;
    for (const auto& arg : *argv) {
        if (!arg.is_string())
            return make_error(ErrorKind::bad_request,
                              fmt::format("\"argv\" must hold strings, not {}", describe_value(arg)));
        auto text = arg.get<std::string>();
        if (text.find('\0') != std::string::npos)
            return make_error(ErrorKind::bad_request, "an argument holds a NUL byte");
        bytes += text.size() + 1;
        parsed.request.argv.push_back(std::move(text));
    }
    if (bytes > k_max_argv_bytes)
        return make_error(ErrorKind::bad_request,
                          fmt::format("\"argv\" is longer than {} bytes", k_max_argv_bytes));
    if (parsed.request.argv.front().empty())
        return make_error(ErrorKind::bad_request, "the command's name is empty");
    if (auto release = body->find("release"); release != body->end() && !release->is_null()) {
        if (!release->is_string() || !is_release_id(release->get<std::string>()))
            return make_error(ErrorKind::bad_request,
                              fmt::format("\"release\" must be a release id like \"v2\", not {}",
                                          describe_value(*release)));
        parsed.request.release = release->get<std::string>();
    }
    const auto flag = [&](const char* name) -> common::Result<bool> {
        auto it = body->find(name);
        if (it == body->end() || it->is_null())
            return false;
        if (!it->is_boolean())
            return make_error(ErrorKind::bad_request,
                              fmt::format("\"{}\" must be true or false", name));
        return it->get<bool>();
    };
    auto tty = flag("tty");
    if (!tty)
        return tty.error();
    auto stdin_open = flag("stdin");
    if (!stdin_open)
        return stdin_open.error();
    parsed.request.tty = parsed.io.tty = *tty;
    parsed.request.stdin_open = parsed.io.stdin_open = *stdin_open;
    for (auto [name, field] : {std::pair{"cols", &parsed.io.cols}, {"rows", &parsed.io.rows}}) {
        auto it = body->find(name);
        if (it == body->end() || it->is_null())
            continue;
        if (!it->is_number_integer() || it->get<long long>() < 1 || it->get<long long>() > 65535)
            return make_error(ErrorKind::bad_request,
                              fmt::format("\"{}\" must be a number from 1 to 65535", name));
        *field = static_cast<unsigned>(it->get<long long>());
    }
    if (auto term = body->find("term"); term != body->end() && !term->is_null()) {
        if (!term->is_string() || term->get<std::string>().size() > 64)
            return make_error(ErrorKind::bad_request, "\"term\" must be a terminal name");
        for (char c : term->get<std::string>())
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_' &&
                c != '+')
                return make_error(ErrorKind::bad_request, "\"term\" must be a terminal name");
        parsed.request.term = term->get<std::string>();
    }
    return parsed;
}

bool allowed_signal(int signal) {
    switch (signal) {
    case SIGHUP: case SIGINT: case SIGQUIT: case SIGTERM: case SIGKILL:
    case SIGUSR1: case SIGUSR2: case SIGWINCH: case SIGCONT: case SIGTSTP:
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
            if (Clock::now() - m_heard > k_silence)
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
                if (auto size = run::decode_resize(frame->payload); size && size->cols &&
                                                                   size->rows)
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
                return protocol_error(
                    fmt::format("a frame of type 0x{:02x} from the client",
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
            return send(run::encode_frame(type, std::string_view(buffer, static_cast<std::size_t>(n))));
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

Response run_command(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    if (request.upgrade != run::k_upgrade)
        return error_response(400, "bad_request",
                              fmt::format("POST /v1/apps/{}/runs opens a session for deployctl run "
                                          "and needs the header \"Upgrade: {}\"",
                                          *app, run::k_upgrade));
    auto parsed = parse_run(request, *app);
    if (!parsed)
        return error_response(parsed.error());
    auto prepared = context.service.one_off(parsed->request);
    if (!prepared)
        return error_response(prepared.error());
    auto job = std::make_shared<OneOff>(std::move(*prepared));
    const json argv = parsed->request.argv;
    Response response;
    response.status = 101;
    response.upgrade_protocol = std::string(run::k_upgrade);
    response.audit_detail = argv.dump();
    response.body = json{{"release", job->release}}.dump(); // for the audit log; not sent
    const std::string label =
        fmt::format("run {} {} {}", *app, job->release, common::shell_join(parsed->request.argv));
    response.upgrade = [job, io = parsed->io, label](Duplex& client) {
        common::log_info(label + ": started");
        const json started = {{"release", job->release}, {"engine", job->engine}};
        if (client.write(run::encode_frame(run::Frame::started, started.dump()))) {
            auto command = runtime::start_one_off(job->plan, io);
            if (!command) {
                json status = {{"status", 127}, {"error", command.error().message}};
                client.write(run::encode_frame(run::Frame::exit, status.dump()));
            } else {
                RunSession(client, *command, label).run();
                command->end(k_end_grace);
            }
        }
        if (job->plan.cleanup)
            job->plan.cleanup();
        common::log_info(label + ": ended");
    };
    return response;
}

} // namespace

void add_run_routes(Router& router, ApiContext& context) {
    router.add("POST", "/v1/apps/{app}/runs",
               [&context](const Request& request) { return run_command(context, request); });
}

} // namespace agent::api
