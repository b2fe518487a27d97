#pragma once
// JSON forms of the Service's types (docs/api.md: release object, status object).

#include <agent/deploy/service.hpp>

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace agent::api {

nlohmann::json release_to_json(const ReleaseInfo& release);
nlohmann::json status_to_json(const AppStatus& status);
// The short form GET /v1/apps lists: {"app","production","url"}.
nlohmann::json app_summary_to_json(const AppStatus& status);
// One name [acme] manages (GET /v1/certificates; a subset in the status object):
// times as RFC 3339 UTC in whole seconds, null when there are none.
nlohmann::json certificate_to_json(const acme::CertificateStatus& certificate);
// The last event of a deployment stream: {"event":"done","release","state","url","error"}.
nlohmann::json done_event(const ReleaseInfo& release, const std::string& url);
// dump() that never throws on invalid UTF-8 (it is replaced).
std::string to_line(const nlohmann::json& json);

} // namespace agent::api
