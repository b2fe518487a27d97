#pragma once
// What deployctl does with one release on one agent: upload its files (upload.cpp), follow
// its deployment (follow.cpp), promote it to PRODUCTION (promote.cpp). Used by the deploy
// and rollback commands and by the rollback of a multi-host deploy.

#include <cli/context.hpp>
#include <cli/package/git_tree.hpp>

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <string>

namespace cli::release {

// Asks the agent which blobs it lacks and uploads only those, each once.
common::Result<output::UploadStats> upload_blobs(transport::Client& client,
                                                 const package::SourceTree& tree,
                                                 output::Printer& out, const std::string& host);

// Follows a deployment's events until its `done` event. FAILED → ErrorKind::failed.
common::Status follow_release(Context& ctx, transport::Client& client, const std::string& host,
                              const std::string& app, const std::string& release,
                              std::chrono::steady_clock::time_point started);

// POST /v1/apps/APP/rollback with `body` ({} or {"release": ID}) and reports the release
// that is live again.
common::Status promote(transport::Client& client, output::Printer& out, const std::string& host,
                       const std::string& app, const nlohmann::json& body);

// POST /v1/apps/APP/canary/ACTION ("promote" or "abort") and reports what became of the
// canary (deployctl canary promote|abort, and a multi-host canary deploy that failed).
common::Status end_canary(transport::Client& client, output::Printer& out, const std::string& host,
                          const std::string& app, const std::string& action);

} // namespace cli::release
