#pragma once
// Running a container engine's CLI (docker, podman): an argv vector (never a
// shell string), a timeout, the combined stdout+stderr captured or streamed
// line by line. Built on Boost.Process; kept out of widely included headers.

#include <common/result.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace agent::runtime {

struct CliCall {
    std::vector<std::string> argv; // argv[0] is the engine binary (a path or a name on PATH)
    std::chrono::milliseconds timeout{30000};
    // Each output line as it arrives; without it, output is only captured.
    std::function<void(std::string_view line)> on_line;
    std::function<void(pid_t pid)> on_started; // the CLI leads its own process group
    const std::atomic<bool>* cancel = nullptr;
    bool capture = true; // keep the output in CliResult::output
    // Added to the CLI's environment: secret values that `docker run --env
    // NAME` (no value) takes from there, so they never show on an argv.
    std::map<std::string, std::string> env;
};

struct CliResult {
    int exit_code = 0;
    bool timed_out = false;
    bool cancelled = false;
    std::string output; // stdout+stderr, the last 64 KiB
    bool ok() const { return !timed_out && !cancelled && exit_code == 0; }
    // The output's last non-empty line, for error messages.
    std::string last_line() const;
};

// ErrorKind::io when the binary cannot be started at all.
common::Result<CliResult> run_cli(const CliCall& call);

// The last line of a `docker build` that failed because an image vanished while the
// classic builder looked through its cache for a step (it looks at every image of the
// step's parent, for FROM scratch every parentless image on the host, and one that
// another build or a cleanup removed meanwhile fails the whole build): worth one more try.
bool image_vanished_during_build(std::string_view last_line);

// For a CLI the caller spawns itself (a one-off run, agent/runtime/one_off):
// the engine CLI's environment ("KEY=VALUE": the small fixed one run_cli
// uses, plus `extra`) and the binary's path (searched on PATH; "" if absent).
std::vector<std::string> engine_environment_list(const std::map<std::string, std::string>& extra);
std::string resolve_engine_binary(const std::string& binary);
// "docker ps -a" style text for messages: the argv joined by spaces.
std::string describe_call(const std::vector<std::string>& argv);

// Where the docker CLI's daemon listens, when it is a local unix socket: the path
// of DOCKER_HOST=unix://PATH, else /var/run/docker.sock. "" when DOCKER_HOST names
// another transport (tcp://, ssh://) or DOCKER_CONTEXT chooses a context (both
// passed on to the CLI, see engine_environment).
std::string docker_socket_path();

} // namespace agent::runtime
