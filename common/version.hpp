#pragma once

namespace common {
// The project version, shared by deployctl, deploy-agent and deploy-proxy.
const char* version();
} // namespace common
