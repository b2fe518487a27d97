#pragma once
// The frames of a command the agent runs for a client over an upgraded connection
// (common/run_frames.hpp): `deployctl run` (handlers_run.cpp) and a `git push` to the
// agent (handlers_git.cpp, whose command is git receive-pack).

#include <agent/api/http.hpp>
#include <agent/runtime/one_off.hpp>

#include <chrono>
#include <string>

namespace agent::api {

// How long a command is given to end (SIGTERM, or SIGHUP on a terminal) before SIGKILL.
inline constexpr auto k_end_grace = std::chrono::seconds(3);

// Relays on this thread until the command has exited and its status was sent (an exit
// frame), or the client is gone or sent nothing for 20 s (it pings every 5): the command
// is then ended. `label` names the session in the agent's log.
void relay_frames(Duplex& client, runtime::RunningOneOff& command, const std::string& label);

} // namespace agent::api
