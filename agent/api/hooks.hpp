#pragma once
// Webhook deliveries (handlers_hooks.cpp) and the preview environments their pull-request
// events make (previews.cpp, docs/git.md).

#include <agent/api/handlers.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>

namespace agent::api {

// What a delivery came to: its answer's status, the result and detail recorded on its row
// (deployctl hooks ls), the answer's other members, and the audit line ("": the delivery's).
struct HookOutcome {
    HookOutcome(int status_, std::string result_, std::string detail_,
                nlohmann::json answer_ = nlohmann::json::object(), std::string audit_ = "")
        : status(status_), result(std::move(result_)), detail(std::move(detail_)),
          answer(std::move(answer_)), audit(std::move(audit_)) {}
    int status;
    std::string result;
    std::string detail;
    nlohmann::json answer;
    std::string audit;
};

// Fetches `source` of the repository at [git] url of `config` (the app's serving
// deploy.toml, with its [git] token) into `destination` of the app's repository on the
// agent; the outcome to answer with when it cannot (409 for a config that cannot fetch, 502
// for a remote that fails, 503 while a fetch runs, 504 past --git-fetch-timeout).
std::optional<HookOutcome> fetch_for_hook(ApiContext& context, const std::string& app,
                                          const common::AppConfig& config,
                                          const std::string& source,
                                          const std::string& destination);

// A commit packaged from the app's repository deployed as `deploy_as` (the app, or one of
// its previews): 202 "deploying" with the release, 200 "unchanged", or the refusal. Sets
// row.release.
HookOutcome deploy_for_hook(ApiContext& context, const std::string& deploy_as,
                            const git::PackagedCommit& packaged, const std::string& audit,
                            DeliveryRow& row);

// A pull_request event (GitHub, Gitea; GitLab's Merge Request Hook) for `app`: its preview
// deployed or updated, or removed when the pull request is closed. Sets row.ref, commit and
// release.
HookOutcome pull_request_delivery(ApiContext& context, const std::string& app,
                                  const std::string& provider, const nlohmann::json& body,
                                  DeliveryRow& row);

} // namespace agent::api
