// agent/runtime/one_off.cpp: a one-off command on pipes or a pseudo-terminal,
// its exit status as a shell reports it, and its whole process group ended.
#include <agent/runtime/one_off.hpp>
#include <agent/runtime/process.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <poll.h>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

using namespace agent::runtime;
using namespace std::chrono_literals;

OneOffPlan plan_of(std::vector<std::string> argv) {
    OneOffPlan plan;
    plan.spawn.argv = std::move(argv);
    plan.spawn.env = clean_environment("/tmp", {{"GREETING", "hi"}});
    plan.spawn.cwd = "/tmp";
    return plan;
}

// Everything `fd` gives until end of file (or EIO: a terminal nobody holds).
std::string read_all(int fd) {
    std::string out;
    char buffer[4096];
    for (int waited = 0; waited < 100;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) == 0) {
            ++waited;
            continue;
        }
        const auto n = ::read(fd, buffer, sizeof buffer);
        if (n > 0)
            out.append(buffer, static_cast<std::size_t>(n));
        else if (n == 0 || errno != EAGAIN)
            break;
    }
    return out;
}

RunningOneOff::Exit wait_exit(RunningOneOff& command) {
    for (int i = 0; i < 500; ++i) {
        if (auto done = command.poll_exit())
            return *done;
        std::this_thread::sleep_for(10ms);
    }
    FAIL("the command did not exit within 5 s");
    return {};
}

} // namespace

TEST_CASE("one-off on pipes: stdin in, stdout and stderr apart, the exit status") {
    auto command = start_one_off(
        plan_of({"/bin/sh", "-c", "read line; echo \"out $line $GREETING\"; echo err >&2; exit 7"}),
        {false, true, 80, 24});
    REQUIRE(command.ok());
    CHECK(command->error >= 0);
    CHECK(command->exited >= 0);
    const std::string input = "typed\n";
    REQUIRE(::write(command->input, input.data(), input.size()) == 6);
    command->close_input();
    CHECK(read_all(command->output) == "out typed hi\n");
    CHECK(read_all(command->error) == "err\n");
    const auto exit = wait_exit(*command);
    CHECK(exit.status == 7);
    CHECK(exit.signal == 0);
}

TEST_CASE("one-off: a signal death is 128 + N, and the group's leftovers are killed") {
    auto command = start_one_off(
        plan_of({"/bin/sh", "-c", "sleep 1000 & echo $!; kill -TERM $$"}), {false, false, 80, 24});
    REQUIRE(command.ok());
    const auto printed = read_all(command->output);
    const pid_t child = static_cast<pid_t>(std::stol(printed));
    const auto exit = wait_exit(*command);
    CHECK(exit.status == 143);
    CHECK(exit.signal == SIGTERM);
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
        gone = !process_start_time(child).has_value();
        std::this_thread::sleep_for(10ms);
    }
    CHECK(gone); // the background sleep went with its group
}

TEST_CASE("one-off on a terminal: it is a tty of the size asked, and ending it hangs it up") {
    auto command = start_one_off(plan_of({"/bin/sh", "-c", "stty size; tty -s && echo is-a-tty; "
                                                           "exec sleep 1000"}),
                                 {true, true, 132, 43});
    REQUIRE(command.ok());
    CHECK(command->tty);
    CHECK(command->error == -1);
    std::string seen;
    char buffer[512];
    for (int i = 0; i < 200 && seen.find("is-a-tty") == std::string::npos; ++i) {
        pollfd p{command->output, POLLIN, 0};
        if (::poll(&p, 1, 20) > 0) {
            const auto n = ::read(command->output, buffer, sizeof buffer);
            if (n > 0)
                seen.append(buffer, static_cast<std::size_t>(n));
        }
    }
    CHECK(seen.find("43 132") != std::string::npos);
    CHECK(seen.find("is-a-tty") != std::string::npos);
    const auto started = std::chrono::steady_clock::now();
    const auto exit = command->end(3s);
    CHECK(exit.signal == SIGHUP); // sleep does not catch it: no SIGKILL was needed
    CHECK(std::chrono::steady_clock::now() - started < 2s);
}

TEST_CASE("one-off: a program that cannot be started is an error, not a hang") {
    auto command = start_one_off(plan_of({"/nonexistent/program"}), {false, false, 80, 24});
    CHECK_FALSE(command.ok());
}
