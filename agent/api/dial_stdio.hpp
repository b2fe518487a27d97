#pragma once
// `deploy-agent dial-stdio`: bridges stdin and stdout to the agent's unix
// socket. deployctl runs it over SSH (the model of `docker -H ssh://`), so the
// agent needs no network port and the SSH login decides who may deploy.

#include <filesystem>

namespace agent::api {

// Copies stdin to the socket and the socket to stdout until both directions
// have ended (stdin's end is passed on as a half-close). Returns the exit code:
// 1, with one line on stderr, when the socket cannot be reached or fails.
int dial_stdio(const std::filesystem::path& socket);

} // namespace agent::api
