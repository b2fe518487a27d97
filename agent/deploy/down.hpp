#pragma once
// deploy-agent down --data-dir DIR: stops an agent running on DIR and what it
// started (its deploy-proxy, app processes and their log-redact writers,
// builds, the containers labelled with its id), for a local try. Releases and
// state stay: `deploy-agent serve` on DIR starts the apps again.

#include <string>

namespace agent {

struct DownOptions {
    std::string data_dir;
    std::string engine_bin; // docker or podman CLI; default: both tried, on PATH
};

// Prints what it stopped; 0 also when nothing ran (idempotent), 2 when DIR is
// no agent's data dir.
int down(const DownOptions& options);

} // namespace agent
