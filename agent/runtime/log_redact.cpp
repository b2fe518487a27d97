#include <agent/logs/stamp.hpp>
#include <agent/runtime/log_redact.hpp>
#include <agent/runtime/process.hpp>
#include <agent/secrets/envelope.hpp>
#include <agent/secrets/redact.hpp>
#include <common/fs.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <sys/wait.h>
#include <unistd.h>

namespace agent::runtime {

using common::ErrorKind;
using common::make_error;

namespace {

constexpr int k_output_fd = 3;
constexpr int k_values_fd = 4;

std::string agent_binary() {
    char path[4096];
    ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
    std::string_view binary(path, n > 0 ? static_cast<std::size_t>(n) : 0);
    if (binary.empty() || binary.ends_with(" (deleted)")) // replaced by an upgrade
        return "/proc/self/exe";
    return std::string(binary);
}

// Calls `on_data` with what `fd` gives until its end (or an error).
template <typename OnData> void read_until_end(int fd, OnData on_data) {
    char buffer[16 * 1024];
    for (;;) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        on_data(std::string_view(buffer, static_cast<std::size_t>(n)));
    }
}

std::vector<std::string> split_values(std::string& text) {
    std::vector<std::string> values;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\0', start);
        if (end == std::string::npos)
            end = text.size();
        values.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    secrets::wipe(text);
    return values;
}

void close_pair(int fds[2]) {
    ::close(fds[0]);
    ::close(fds[1]);
}

} // namespace

common::Result<int> start_log_redactor(const std::filesystem::path& log,
                                       const std::vector<std::string>& values,
                                       logs::Rotation rotation) {
    int output[2], secret[2];
    if (::pipe2(output, O_CLOEXEC) != 0)
        return make_error(ErrorKind::io,
                          std::string("cannot make a pipe: ") + std::strerror(errno));
    if (::pipe2(secret, O_CLOEXEC) != 0) {
        close_pair(output);
        return make_error(ErrorKind::io,
                          std::string("cannot make a pipe: ") + std::strerror(errno));
    }
    SpawnSpec spec;
    spec.argv = {agent_binary(), "log-redact",
                 "--file",       log.string(),
                 "--max-size",   std::to_string(rotation.max_size),
                 "--keep",       std::to_string(rotation.keep)};
    spec.env = {"LANG=C.UTF-8"};
    spec.cwd = log.parent_path();
    spec.session = Session::new_session;
    spec.inherit_fds = {output[0], secret[0]};
    auto pid = spawn(spec);
    ::close(output[0]);
    ::close(secret[0]);
    if (!pid) {
        ::close(output[1]);
        ::close(secret[1]);
        return pid.error();
    }
    std::string payload;
    for (const auto& value : values) {
        payload += value;
        payload += '\0';
    }
    bool sent = common::write_all(secret[1], payload);
    secrets::wipe(payload);
    ::close(secret[1]);
    // It forks once it has the values and its first process exits, so the
    // writer is nobody's child here and never a zombie of the agent.
    int status = 0;
    while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!sent || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ::close(output[1]);
        return make_error(ErrorKind::io,
                          "the log redactor (deploy-agent log-redact) did not start");
    }
    return output[1];
}

int log_redact_main(const LogWriterOptions& options) {
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE})
        std::signal(sig, SIG_IGN); // ends at the end of the app's output, not before
    std::string payload;
    read_until_end(k_values_fd, [&](std::string_view data) { payload.append(data); });
    ::close(k_values_fd);
    if (::fcntl(k_output_fd, F_GETFD) < 0)
        return 2; // not started by the agent
    auto values = split_values(payload);
    pid_t child = ::fork();
    if (child < 0)
        return 1;
    if (child > 0)
        return 0;
    // The log, rotated; without --file (a writer an older agent started), stdout.
    std::optional<logs::RotatingFile> file;
    if (!options.file.empty())
        file.emplace(options.file, logs::Rotation{options.max_size, options.keep});
    // Every line starts with the time it came (logs/stamp.hpp).
    logs::LineStamper stamper;
    std::string stamped;
    secrets::StreamRedactor stream(secrets::Redactor(values), [&](std::string_view redacted) {
        stamped.clear();
        stamper.stamp(redacted, stamped, logs::now_micros());
        const std::string_view text = stamped;
        if (!file) {
            common::write_all(STDOUT_FILENO, text);
        } else if (auto written = file->write(text); !written) {
            // Nobody reads its stderr: the failure goes where the output went.
            (void)file->write("deploy-agent log-redact: " + written.error().message + "\n");
        }
    });
    for (auto& value : values)
        secrets::wipe(value);
    read_until_end(k_output_fd, [&](std::string_view data) { stream.feed(data); });
    stream.flush();
    ::_exit(0);
}

} // namespace agent::runtime
