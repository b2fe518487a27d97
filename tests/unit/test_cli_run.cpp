// deployctl run against a fake agent: a thread listening on 127.0.0.1 that reads the
// request, answers (101 and frames, or an error) as docs/api.md says, and records what the
// client sent. Stdin, stdout and stderr are pipes (Context::fds).

#include <cli/transport/http_client.hpp>
#include <common/run_frames.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <tests/unit/cli_run.hpp>
#include <tests/unit/temp_dir.hpp>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using nlohmann::json;
namespace run = common::run;
using run::Frame;

// One connection's worth of agent: `script` runs once the request is read.
class FakeAgent {
  public:
    using Script = std::function<void(FakeAgent&)>;

    // On a unix socket at `unix_path` (as the SSH tunnel's), else on TCP.
    explicit FakeAgent(Script script, std::string unix_path = "")
        : m_script(std::move(script)), m_unix_path(std::move(unix_path)) {
        if (!m_unix_path.empty()) {
            m_listen = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un address{};
            address.sun_family = AF_UNIX;
            REQUIRE(m_unix_path.size() < sizeof address.sun_path);
            std::memcpy(address.sun_path, m_unix_path.c_str(), m_unix_path.size() + 1);
            REQUIRE(::bind(m_listen, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
            REQUIRE(::listen(m_listen, 4) == 0);
            m_thread = std::thread([this] { serve(); });
            return;
        }
        m_listen = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(m_listen, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(m_listen, 4) == 0);
        socklen_t length = sizeof address;
        ::getsockname(m_listen, reinterpret_cast<sockaddr*>(&address), &length);
        m_port = ntohs(address.sin_port);
        m_thread = std::thread([this] { serve(); });
    }
    ~FakeAgent() {
        m_thread.join();
        ::close(m_listen);
    }
    FakeAgent(const FakeAgent&) = delete;
    FakeAgent& operator=(const FakeAgent&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(m_port); }
    int fd() const { return m_fd; }

    // What the client asked.
    std::string head;
    json body;
    // The frames the client sent, in order (read_until()).
    std::vector<run::Decoded> frames;

    void send(std::string_view bytes) {
        while (!bytes.empty()) {
            ssize_t n = ::send(m_fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n <= 0)
                return;
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    void frame(Frame type, std::string_view payload = {}) { send(run::encode_frame(type, payload)); }
    void answer_101() {
        send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
             "deployctl-run/1\r\n\r\n");
    }
    void answer_error(int status, const char* code, const char* message) {
        const std::string text =
            json{{"error", {{"code", code}, {"message", message}}}}.dump();
        send("HTTP/1.1 " + std::to_string(status) +
             " Error\r\nContent-Type: application/json\r\nContent-Length: " +
             std::to_string(text.size()) + "\r\nConnection: close\r\n\r\n" + text);
    }
    // Reads frames from the client until one of `type` has come (true) or it closed.
    bool read_until(Frame type) {
        char buffer[4096];
        for (;;) {
            while (auto decoded = m_reader.next()) {
                frames.push_back(*decoded);
                if (decoded->type == type)
                    return true;
            }
            pollfd p{m_fd, POLLIN, 0};
            if (::poll(&p, 1, 10000) <= 0)
                return false;
            ssize_t n = ::recv(m_fd, buffer, sizeof buffer, 0);
            if (n <= 0)
                return false;
            m_reader.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
        }
    }
    std::string stdin_bytes() const {
        std::string all;
        for (const auto& f : frames)
            if (f.type == Frame::stdin_data)
                all += f.payload;
        return all;
    }

  private:
    void serve() {
        m_fd = ::accept4(m_listen, nullptr, nullptr, SOCK_CLOEXEC);
        if (m_fd < 0)
            return;
        std::string data;
        char buffer[4096];
        std::size_t end = std::string::npos;
        while ((end = data.find("\r\n\r\n")) == std::string::npos) {
            ssize_t n = ::recv(m_fd, buffer, sizeof buffer, 0);
            if (n <= 0)
                break;
            data.append(buffer, static_cast<std::size_t>(n));
        }
        if (end != std::string::npos) {
            head = data.substr(0, end);
            std::string rest = data.substr(end + 4);
            const auto at = head.find("Content-Length: ");
            const std::size_t length =
                at == std::string::npos ? 0 : std::stoul(head.substr(at + 16));
            while (rest.size() < length) {
                ssize_t n = ::recv(m_fd, buffer, sizeof buffer, 0);
                if (n <= 0)
                    break;
                rest.append(buffer, static_cast<std::size_t>(n));
            }
            body = json::parse(rest.substr(0, length), nullptr, false);
            m_reader.feed(rest.substr(std::min(length, rest.size())));
            m_script(*this);
        }
        // A FIN after the frames, then what the client still sends read and dropped: a close
        // with its frames unread would reset the connection, and a reset can discard the
        // frames the client has not read yet (seen on a loaded CI machine).
        ::shutdown(m_fd, SHUT_WR);
        for (pollfd p{m_fd, POLLIN, 0}; ::poll(&p, 1, 2000) > 0;)
            if (::recv(m_fd, buffer, sizeof buffer, 0) <= 0)
                break;
        ::close(m_fd);
    }

    Script m_script;
    std::string m_unix_path;
    int m_listen = -1;
    int m_fd = -1;
    int m_port = 0;
    std::thread m_thread;
    run::FrameReader m_reader;
};

// A pipe whose write end the test fills (and closes), or whose read end a thread reads
// while the run writes (start_reading, then drain).
struct Pipe {
    int fds[2] = {-1, -1};
    std::thread reader;
    std::string collected;
    Pipe() { REQUIRE(::pipe2(fds, O_CLOEXEC) == 0); }
    ~Pipe() {
        if (reader.joinable())
            drain();
        for (int fd : fds)
            if (fd >= 0)
                ::close(fd);
    }
    void close_write() {
        if (fds[1] >= 0)
            ::close(fds[1]);
        fds[1] = -1;
    }
    void start_reading() {
        reader = std::thread([this] {
            char buffer[4096];
            for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;)
                collected.append(buffer, static_cast<std::size_t>(n));
        });
    }
    // Everything written, once the write end is closed.
    std::string drain() {
        close_write();
        if (reader.joinable())
            reader.join();
        return collected;
    }
};

// `deployctl [--json] run ARGS...` against `agent`, with `input` on its stdin.
struct Run {
    test::CliRun cli;
    Pipe in, out, err;
    common::Status status;

    Run(FakeAgent& agent, std::vector<std::string> args, const std::string& input = "",
        bool json = false) {
        ::signal(SIGPIPE, SIG_IGN); // the writer below may write to a closed pipe
        cli.ctx.global.hosts = {agent.url()};
        cli.ctx.global.app = "hello";
        cli.ctx.global.json = json;
        cli.ctx.connect = [](const cli::HostUrl& url, const cli::SshSettings&,
                             const cli::transport::TlsOptions&)
            -> common::Result<std::unique_ptr<cli::transport::Client>> {
            return cli::transport::make_http_client(url.base_url);
        };
        cli.ctx.fds = {in.fds[0], out.fds[1], err.fds[1]};
        out.start_reading();
        err.start_reading();
        // A pipe holds 64 KiB: the input goes in from another thread while the run reads it.
        std::thread writer([this, input] {
            std::string_view rest = input;
            while (!rest.empty()) {
                ssize_t n = ::write(in.fds[1], rest.data(), rest.size());
                if (n <= 0)
                    break;
                rest.remove_prefix(static_cast<std::size_t>(n));
            }
            in.close_write();
        });
        args.insert(args.begin(), "run");
        status = cli.run(args);
        // A run that stopped reading (the command ended first): the writer gets EPIPE.
        ::close(in.fds[0]);
        in.fds[0] = -1;
        writer.join();
    }
    int exit_code() const {
        return status ? cli.ctx.exit_code.value_or(0) : common::exit_code(status.error().kind);
    }
};

} // namespace

TEST_CASE("run: stdout and stderr apart, the exit status, the request as the protocol says") {
    FakeAgent agent([](FakeAgent& a) {
        a.answer_101();
        a.frame(Frame::started, R"({"release":"v3","engine":"process"})");
        a.frame(Frame::stdout_data, "out 1\n");
        a.frame(Frame::stderr_data, "err 1\n");
        a.frame(Frame::stdout_data, "out 2\n");
        a.read_until(Frame::stdin_eof);
        a.frame(Frame::exit, R"({"status":7})");
    });
    Run r(agent, {"--", "sh", "-c", "echo out; exit 7", "--", "-x"});
    REQUIRE(r.status.ok());
    CHECK(r.exit_code() == 7);
    CHECK(r.out.drain() == "out 1\nout 2\n");
    CHECK(r.err.drain() == "err 1\n");
    CHECK(agent.head.starts_with("POST /v1/apps/hello/runs HTTP/1.1\r\n"));
    CHECK(agent.head.find("\r\nUpgrade: deployctl-run/1") != std::string::npos);
    CHECK(agent.head.find("\r\nConnection: Upgrade") != std::string::npos);
    CHECK(agent.body["argv"] == json({"sh", "-c", "echo out; exit 7", "--", "-x"}));
    CHECK(agent.body["tty"] == false);
    CHECK(agent.body["stdin"] == true); // a pipe is not a terminal
    CHECK_FALSE(agent.body.contains("release"));
}

TEST_CASE("run: stdin goes as stdin frames, then stdin_eof; --release is sent") {
    FakeAgent agent([](FakeAgent& a) {
        a.answer_101();
        a.frame(Frame::started, R"({"release":"v2","engine":"process"})");
        a.read_until(Frame::stdin_eof);
        a.frame(Frame::stdout_data, a.stdin_bytes());
        a.frame(Frame::exit, R"({"status":0})");
    });
    std::string big(200000, 'x');
    Run r(agent, {"--release", "v2", "--", "cat"}, "hello\n" + big);
    REQUIRE(r.status.ok());
    CHECK(r.exit_code() == 0);
    CHECK(agent.body["release"] == "v2");
    REQUIRE(!agent.frames.empty());
    CHECK(agent.frames.back().type == Frame::stdin_eof);
    CHECK(agent.stdin_bytes() == "hello\n" + big);
    CHECK(r.out.drain() == "hello\n" + big);
}

TEST_CASE("run: a signal death is 128+N; a command that cannot start says why") {
    SUBCASE("signal") {
        FakeAgent agent([](FakeAgent& a) {
            a.answer_101();
            a.frame(Frame::exit, R"({"status":143,"signal":15})");
        });
        Run r(agent, {"--", "sleep", "9"});
        REQUIRE(r.status.ok());
        CHECK(r.exit_code() == 143);
    }
    SUBCASE("not found") {
        FakeAgent agent([](FakeAgent& a) {
            a.answer_101();
            a.frame(Frame::exit, R"({"status":127,"error":"no-such: command not found"})");
        });
        Run r(agent, {"--", "no-such"});
        REQUIRE(r.status.ok());
        CHECK(r.exit_code() == 127);
        CHECK(r.err.drain() == "error: no-such: command not found\n");
    }
}

TEST_CASE("run: the agent's refusals map to the exit codes of the other commands") {
    struct Case {
        int status;
        const char* code;
        int exit;
    };
    for (auto c : {Case{404, "not_found", 2}, Case{400, "bad_request", 2},
                   Case{409, "refused", 5}, Case{401, "unauthorized", 3},
                   Case{403, "forbidden", 3}}) {
        CAPTURE(c.status);
        FakeAgent agent([&](FakeAgent& a) { a.answer_error(c.status, c.code, "app hello: no"); });
        Run r(agent, {"--", "true"});
        REQUIRE_FALSE(r.status.ok());
        CHECK(r.exit_code() == c.exit);
    }
    FakeAgent agent([](FakeAgent& a) {
        a.answer_error(404, "not_found", "app hello has no PRODUCTION release");
    });
    Run r(agent, {"--", "true"});
    REQUIRE_FALSE(r.status.ok());
    CHECK(r.status.error().message.find("--release") != std::string::npos);

    FakeAgent old_agent([](FakeAgent& a) {
        a.answer_error(404, "not_found", "no such endpoint: POST /v1/apps/hello/runs");
    });
    Run old_run(old_agent, {"--", "true"});
    CHECK(old_run.exit_code() == 2);
    CHECK(old_run.status.error().message.find("older than `deployctl run`") != std::string::npos);
}

TEST_CASE("run: an unknown frame is a protocol error (exit 1)") {
    FakeAgent agent([](FakeAgent& a) {
        a.answer_101();
        a.frame(Frame::stdout_data, "partial\n");
        a.send(std::string("\x7f\0\0\0\0", 5));
        a.read_until(Frame::ping); // until the client closes
    });
    Run r(agent, {"--", "true"});
    REQUIRE_FALSE(r.status.ok());
    CHECK(r.exit_code() == 1);
    CHECK(r.status.error().message.find("broke the run protocol") != std::string::npos);
    CHECK(r.out.drain() == "partial\n");
}

TEST_CASE("run: the connection ends before an exit frame (exit 3)") {
    FakeAgent agent([](FakeAgent& a) {
        a.answer_101();
        a.frame(Frame::stdout_data, "half");
    });
    Run r(agent, {"--", "true"});
    REQUIRE_FALSE(r.status.ok());
    CHECK(r.exit_code() == 3);
    CHECK(r.status.error().message.find("closed before the command ended") != std::string::npos);
}

TEST_CASE("run --json: output and exit events, the exit code still the command's") {
    FakeAgent agent([](FakeAgent& a) {
        a.answer_101();
        a.frame(Frame::stdout_data, "hi\n");
        a.frame(Frame::stderr_data, "oops\n");
        a.frame(Frame::exit, R"({"status":130,"signal":2})");
    });
    Run r(agent, {"--", "sh"}, "", true);
    REQUIRE(r.status.ok());
    CHECK(r.exit_code() == 130);
    std::vector<json> events;
    std::istringstream lines(r.cli.out.str());
    for (std::string line; std::getline(lines, line);)
        events.push_back(json::parse(line));
    REQUIRE(events.size() == 3);
    CHECK(events[0] == json{{"event", "output"}, {"stream", "stdout"}, {"data", "hi\n"},
                            {"host", agent.url()}, {"v", 1}});
    CHECK(events[1]["stream"] == "stderr");
    CHECK(events[1]["data"] == "oops\n");
    CHECK(events[2] == json{{"event", "exit"}, {"status", 130}, {"signal", 2},
                            {"host", agent.url()}, {"v", 1}});
    CHECK(r.out.drain().empty());
}

TEST_CASE("run: SIGINT received goes to the command as a signal frame") {
    std::atomic<bool> got_signal = false;
    FakeAgent agent([&](FakeAgent& a) {
        a.answer_101();
        a.read_until(Frame::stdin_eof);
        ::kill(::getpid(), SIGINT);
        if (a.read_until(Frame::signal) && a.frames.back().payload == std::string(1, SIGINT))
            got_signal = true;
        a.frame(Frame::exit, R"({"status":130,"signal":2})");
    });
    Run r(agent, {"--", "sleep", "100"});
    REQUIRE(r.status.ok());
    CHECK(got_signal);
    CHECK(r.exit_code() == 130);
}

TEST_CASE("run: a usage error without a command; -t without a terminal goes on without one") {
    FakeAgent agent([](FakeAgent& a) {
        a.answer_101();
        a.frame(Frame::exit, R"({"status":0})");
    });
    Run r(agent, {"-t", "--", "true"});
    REQUIRE(r.status.ok());
    CHECK(agent.body["tty"] == false);
    CHECK(r.cli.err.str().find("not a terminal") != std::string::npos);
}

TEST_CASE("run over a unix socket, as through the SSH tunnel: the same request and frames") {
    test::TempDir dir;
    const std::string socket = (dir.path() / "agent.sock").string();
    FakeAgent agent(
        [](FakeAgent& a) {
            a.answer_101();
            a.read_until(Frame::stdin_eof);
            a.frame(Frame::stdout_data, a.stdin_bytes());
            a.frame(Frame::exit, R"({"status":3})");
        },
        socket);
    test::CliRun cli;
    Pipe in, out, err;
    cli.ctx.global.hosts = {"http://127.0.0.1:1"}; // names the agent; the socket is the way
    cli.ctx.global.app = "hello";
    cli.ctx.connect = [&](const cli::HostUrl& url, const cli::SshSettings&,
                          const cli::transport::TlsOptions&)
        -> common::Result<std::unique_ptr<cli::transport::Client>> {
        cli::transport::HttpOptions options;
        options.unix_socket = socket;
        return cli::transport::make_http_client(url.base_url, options);
    };
    cli.ctx.fds = {in.fds[0], out.fds[1], err.fds[1]};
    out.start_reading();
    err.start_reading();
    REQUIRE(::write(in.fds[1], "over the socket\n", 16) == 16);
    in.close_write();
    auto status = cli.run({"run", "--", "cat"});
    REQUIRE(status.ok());
    CHECK(cli.ctx.exit_code == 3);
    CHECK(out.drain() == "over the socket\n");
    CHECK(agent.head.find("\r\nHost: deploy-agent\r\n") != std::string::npos);
}

TEST_CASE("run: a command that exits without reading its stdin still gives its status") {
    FakeAgent agent([](FakeAgent& a) {
        a.answer_101();
        a.frame(Frame::exit, R"({"status":0})");
        ::shutdown(a.fd(), SHUT_WR); // then closes with stdin frames unread
    });
    Run r(agent, {"--", "true"}, std::string(4 << 20, 'x'));
    REQUIRE_MESSAGE(r.status.ok(), (r.status ? "" : r.status.error().message));
    CHECK(r.exit_code() == 0);
}
