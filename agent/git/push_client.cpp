#include <agent/api/unix_socket.hpp>
#include <agent/git/push_client.hpp>
#include <agent/git/repository.hpp>
#include <common/ascii.hpp>
#include <common/command_line.hpp>
#include <common/config.hpp>
#include <common/fs.hpp>
#include <common/run_frames.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <optional>
#include <poll.h>
#include <sstream>
#include <unistd.h>

namespace agent::git {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace run = common::run;

constexpr std::size_t k_max_pending = 1u << 20;

void say(const std::string& text) {
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
}

// An answer's status line and headers, and the bytes that came after them.
struct Answer {
    int status = 0;
    std::optional<std::size_t> length;
    bool chunked = false;
    std::string rest;
};

// Sends a POST with a JSON body on `fd` (blocking) and reads the answer's head.
std::optional<Answer> post(int fd, const std::string& path, const json& body,
                           std::string_view upgrade, std::string& error) {
    const std::string text = body.dump();
    std::string request = fmt::format("POST {} HTTP/1.1\r\nHost: deploy-agent\r\n"
                                      "Content-Type: application/json\r\nContent-Length: {}\r\n",
                                      path, text.size());
    if (!upgrade.empty())
        request += fmt::format("Connection: Upgrade\r\nUpgrade: {}\r\n", upgrade);
    request += "\r\n" + text;
    if (!common::write_all(fd, request)) {
        error = std::string("cannot send to the agent: ") + std::strerror(errno);
        return std::nullopt;
    }
    std::string got;
    std::size_t head_end;
    char buffer[16384];
    while ((head_end = got.find("\r\n\r\n")) == std::string::npos) {
        if (got.size() > 65536) {
            error = "the agent's answer has a head too long";
            return std::nullopt;
        }
        const auto n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            error = "the agent closed the connection without answering";
            return std::nullopt;
        }
        got.append(buffer, static_cast<std::size_t>(n));
    }
    Answer answer;
    const std::string head = got.substr(0, head_end);
    answer.rest = got.substr(head_end + 4);
    if (head.size() < 12 || head.rfind("HTTP/1.", 0) != 0 ||
        std::sscanf(head.c_str() + 9, "%3d", &answer.status) != 1) {
        error = "the agent's answer is not HTTP";
        return std::nullopt;
    }
    for (std::size_t at = head.find("\r\n"); at != std::string::npos;) {
        const std::size_t next = head.find("\r\n", at + 2);
        const std::string line = common::ascii_lower(
            head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2));
        if (line.rfind("content-length:", 0) == 0)
            answer.length = std::strtoull(line.c_str() + 15, nullptr, 10);
        if (line.rfind("transfer-encoding:", 0) == 0 && line.find("chunked") != std::string::npos)
            answer.chunked = true;
        at = next;
    }
    return answer;
}

// Reads `fd` until its end, or `length` bytes, after `have`.
std::string read_rest(int fd, std::string have, std::optional<std::size_t> length) {
    char buffer[16384];
    while ((!length || have.size() < *length) && have.size() < (4u << 20)) {
        const auto n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have.append(buffer, static_cast<std::size_t>(n));
    }
    return have;
}

// The message of an error answer ({"error": {"message": ...}}), else its text.
std::string error_message(const json& body, const std::string& text) {
    if (body.is_object() && body.contains("error") && body["error"].is_object())
        return body["error"].value("message", text);
    return text.empty() ? "no reason given" : text;
}

// Decodes a chunked body as it arrives.
class Chunks {
  public:
    // Appends the decoded bytes of `in` to `out`; false on a malformed body.
    bool feed(std::string_view in, std::string& out) {
        m_buffer.append(in);
        while (true) {
            if (m_left == 0) {
                const auto eol = m_buffer.find("\r\n", m_at);
                if (eol == std::string::npos)
                    break;
                if (m_need_crlf) { // the CRLF after a chunk's data
                    if (eol != m_at)
                        return false;
                    m_at = eol + 2;
                    m_need_crlf = false;
                    continue;
                }
                const std::string size = m_buffer.substr(m_at, eol - m_at);
                char* end = nullptr;
                m_left = std::strtoull(size.c_str(), &end, 16);
                if (end == size.c_str())
                    return false;
                m_at = eol + 2;
                if (m_left == 0) {
                    m_finished = true;
                    break;
                }
            }
            const std::size_t take = std::min<std::size_t>(m_left, m_buffer.size() - m_at);
            if (take == 0)
                break;
            out.append(m_buffer, m_at, take);
            m_at += take;
            m_left -= take;
            if (m_left == 0)
                m_need_crlf = true;
        }
        m_buffer.erase(0, m_at);
        m_at = 0;
        return true;
    }
    bool finished() const { return m_finished; }

  private:
    std::string m_buffer;
    std::size_t m_at = 0;
    std::size_t m_left = 0;
    bool m_need_crlf = false;
    bool m_finished = false;
};

// --- git-receive -------------------------------------------------------------------------

// Relays stdin to the agent as frames and its frames to stdout and stderr until the exit
// frame; pings every 5 s so that a long hook (a build) keeps the session.
int relay(int sock, std::string first_bytes) {
    ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
    run::FrameReader frames;
    frames.feed(first_bytes);
    std::string pending; // frames not sent yet
    bool input_done = false;
    auto last_sent = Clock::now();
    char buffer[65536];
    while (true) {
        while (auto frame = frames.next()) {
            switch (frame->type) {
            case run::Frame::stdout_data:
                if (!common::write_all(STDOUT_FILENO, frame->payload))
                    return 1; // the pusher went away
                break;
            case run::Frame::stderr_data:
                common::write_all(STDERR_FILENO, frame->payload);
                break;
            case run::Frame::exit: {
                const auto status = json::parse(frame->payload, nullptr, false);
                if (status.is_object() && status.contains("error"))
                    say("deploy-agent: " + status.value("error", ""));
                return status.is_object() ? status.value("status", 1) : 1;
            }
            default: // started, or anything this side does not use
                break;
            }
        }
        if (!frames.error().empty()) {
            say("deploy-agent: " + frames.error());
            return 1;
        }
        if (pending.empty() && Clock::now() - last_sent >= run::k_ping_every)
            pending = run::encode_frame(run::Frame::ping);
        pollfd fds[2] = {
            {sock, static_cast<short>(POLLIN | (pending.empty() ? 0 : POLLOUT)), 0},
            {input_done || pending.size() > k_max_pending ? -1 : STDIN_FILENO, POLLIN, 0}};
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
                              last_sent + run::k_ping_every - Clock::now())
                              .count();
        if (::poll(fds, 2, static_cast<int>(std::clamp<long long>(wait + 1, 0, 5000))) < 0 &&
            errno != EINTR) {
            say(std::string("deploy-agent: poll: ") + std::strerror(errno));
            return 1;
        }
        if (fds[1].revents) {
            const auto n = ::read(STDIN_FILENO, buffer, sizeof buffer);
            if (n > 0) {
                pending += run::encode_frame(run::Frame::stdin_data,
                                             std::string_view(buffer, static_cast<std::size_t>(n)));
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                pending += run::encode_frame(run::Frame::stdin_eof);
                input_done = true;
            }
        }
        if (!pending.empty() && (fds[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
            const auto n = ::write(sock, pending.data(), pending.size());
            if (n > 0) {
                pending.erase(0, static_cast<std::size_t>(n));
                last_sent = Clock::now();
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                say("deploy-agent: the connection to the agent failed");
                return 1;
            }
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            const auto n = ::read(sock, buffer, sizeof buffer);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                say("deploy-agent: the agent closed the connection before git receive-pack "
                    "ended (did it restart?)");
                return 1;
            }
            if (n > 0)
                frames.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
        }
    }
}

// --- the pre-receive hook ----------------------------------------------------------------

// Prints one event of the deploy for the pusher; `state` keeps the last settled one.
void show_event(const json& event, std::string& done_state) {
    if (!event.is_object())
        return;
    const std::string kind = event.value("event", "");
    if (kind == "push") {
        for (const auto& note : event.value("notes", json::array()))
            if (note.is_string())
                std::cout << note.get<std::string>() << "\n";
    } else if (kind == "state") {
        std::cout << "-----> " << event.value("release", "") << " " << event.value("state", "");
        if (event.contains("message") && event["message"].is_string())
            std::cout << ": " << event["message"].get<std::string>();
        std::cout << "\n";
    } else if (kind == "log") {
        std::cout << "       " << event.value("line", "") << "\n";
    } else if (kind == "health") {
        std::cout << "       health check: " << event.value("message", "") << "\n";
    } else if (kind == "done") {
        done_state = event.value("state", "");
        const std::string release = event.value("release", "");
        if (done_state == "PRODUCTION") {
            std::cout << "-----> " << release << " is live";
            if (event["url"].is_string())
                std::cout << " at " << event["url"].get<std::string>();
            std::cout << "\n";
        } else {
            std::cout << "-----> " << release << " " << done_state;
            if (event.contains("error") && event["error"].is_string())
                std::cout << ": " << event["error"].get<std::string>();
            std::cout << "\n       the push is rejected; the serving release keeps serving\n";
        }
    }
    std::cout.flush();
}

void show_notes(const json& body) {
    std::string unused;
    if (body.is_object() && body.contains("notes"))
        show_event({{"event", "push"}, {"notes", body["notes"]}}, unused);
}

} // namespace

std::string pushed_app(const std::string& original_command, std::string& error) {
    if (original_command.empty()) {
        error = "deploy-agent git-receive serves `git push` as the forced command of an SSH key "
                "(deploy-agent keys add); it runs nothing else";
        return "";
    }
    auto words = common::split_words(original_command);
    if (!words || words->empty()) {
        error = "cannot read the command the client asked for";
        return "";
    }
    std::vector<std::string> command = *words;
    if (command.size() >= 2 && command[0] == "git" && command[1].rfind("receive-pack", 0) == 0)
        command.erase(command.begin()); // "git receive-pack" as one word less
    const std::string& verb = command[0];
    if (verb != "git-receive-pack" && verb != "receive-pack") {
        error = verb == "git-upload-pack" || verb == "git-upload-archive"
                    ? "this key may only push (git push); fetching from the agent is not served"
                    : "this key may only push with git (git push ssh://USER@SERVER/APP BRANCH)";
        return "";
    }
    if (command.size() != 2) {
        error = "git push names one repository: ssh://USER@SERVER/APP";
        return "";
    }
    std::string app = command[1];
    while (!app.empty() && app.front() == '/')
        app.erase(0, 1);
    if (app.rfind("~/", 0) == 0)
        app.erase(0, 2);
    while (!app.empty() && app.back() == '/')
        app.pop_back();
    if (app.size() > 4 && app.substr(app.size() - 4) == ".git")
        app.resize(app.size() - 4);
    if (!common::is_valid_app_name(app)) {
        error = fmt::format("\"{}\" is not an app's name: push to ssh://USER@SERVER/APP, where "
                            "APP is 1-63 lower-case letters, digits or '-'",
                            command[1]);
        return "";
    }
    return app;
}

int git_receive(const ReceiveOptions& options) {
    std::signal(SIGPIPE, SIG_IGN);
    const char* original = std::getenv("SSH_ORIGINAL_COMMAND");
    std::string error;
    const std::string app = pushed_app(original ? original : "", error);
    if (app.empty()) {
        say("deploy-agent: " + error);
        return 1;
    }
    if (!options.apps.empty() &&
        std::find(options.apps.begin(), options.apps.end(), app) == options.apps.end()) {
        say(fmt::format("deploy-agent: the key {}may push to {} only, not to {}",
                        options.key.empty() ? "" : "\"" + options.key + "\" ",
                        common::shell_join(options.apps), app));
        return 1;
    }
    auto fd = api::connect_unix(options.socket);
    if (!fd) {
        say("deploy-agent: " + fd.error().message + " (is deploy-agent serve running?)");
        return 1;
    }
    json body = json::object();
    if (!options.key.empty())
        body["key"] = options.key;
    auto answer = post(*fd, "/v1/apps/" + app + "/git/receive", body, k_receive_upgrade, error);
    if (!answer) {
        say("deploy-agent: " + error);
        ::close(*fd);
        return 1;
    }
    if (answer->status != 101) {
        const auto text = read_rest(*fd, answer->rest, answer->length);
        say("deploy-agent: " + error_message(json::parse(text, nullptr, false), text));
        ::close(*fd);
        return 1;
    }
    const int status = relay(*fd, std::move(answer->rest));
    ::close(*fd);
    return status;
}

int git_hook_pre_receive() {
    std::signal(SIGPIPE, SIG_IGN);
    const char* push = std::getenv(k_push_env);
    const char* socket = std::getenv(k_socket_env);
    const char* app = std::getenv(k_app_env);
    if (!push || !socket || !app) {
        say("deploy-agent git-hook: runs as the pre-receive hook of a push the agent serves "
            "(docs/git.md)");
        return 1;
    }
    json refs = json::array();
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream words(line);
        std::string old_id, new_id, ref;
        if (words >> old_id >> new_id >> ref)
            refs.push_back({{"old", old_id}, {"new", new_id}, {"ref", ref}});
    }
    const char* quarantine = std::getenv("GIT_QUARANTINE_PATH");
    json body = {{"push", push}, {"refs", refs}, {"quarantine", quarantine ? quarantine : ""}};
    auto fd = api::connect_unix(socket);
    if (!fd) {
        say("deploy-agent: " + fd.error().message);
        return 1;
    }
    std::string error;
    auto answer = post(*fd, std::string("/v1/apps/") + app + "/git/pre-receive", body, "", error);
    if (!answer) {
        say("deploy-agent: " + error);
        ::close(*fd);
        return 1;
    }
    if (!answer->chunked) {
        const auto text = read_rest(*fd, answer->rest, answer->length);
        ::close(*fd);
        const auto parsed = json::parse(text, nullptr, false);
        show_notes(parsed);
        if (answer->status >= 300) {
            std::cout << "-----> not deployed: " << error_message(parsed, text)
                      << "\n       the push is rejected; the serving release keeps serving\n";
            std::cout.flush();
            return 1;
        }
        if (parsed.is_object() && parsed.value("unchanged", false)) {
            std::cout << "-----> " << parsed.value("release", "")
                      << " already serves this tree and deploy.toml: nothing to deploy\n";
            std::cout.flush();
        }
        return 0;
    }
    // The deploy's events, as NDJSON lines in chunks.
    Chunks chunks;
    std::string text, done_state;
    std::string bytes = std::move(answer->rest);
    char buffer[16384];
    while (true) {
        if (!chunks.feed(bytes, text)) {
            say("deploy-agent: the agent's answer is malformed");
            break;
        }
        for (auto nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n')) {
            show_event(json::parse(text.substr(0, nl), nullptr, false), done_state);
            text.erase(0, nl + 1);
        }
        if (chunks.finished())
            break;
        const auto n = ::read(*fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) {
            bytes.clear();
            continue;
        }
        if (n <= 0)
            break;
        bytes.assign(buffer, static_cast<std::size_t>(n));
    }
    ::close(*fd);
    if (done_state.empty()) {
        std::cout << "-----> the agent stopped answering before the deploy settled: the push "
                     "is rejected (deployctl status shows how the deploy ended)\n";
        std::cout.flush();
        return 1;
    }
    return done_state == "PRODUCTION" ? 0 : 1;
}

} // namespace agent::git
