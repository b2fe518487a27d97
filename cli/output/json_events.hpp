#pragma once
// The objects `--json` prints (docs/json.md), as pure functions.

#include <cli/output/events.hpp>

#include <nlohmann/json.hpp>

namespace cli::output {

// The "v" every printed object carries (docs/json.md). Raised only when a field
// changes meaning or disappears; added fields and events keep it.
inline constexpr int k_json_schema_version = 1;

// `line` with "v" set: in the object, or in each object of an array.
nlohmann::json with_schema_version(const nlohmann::json& line);

nlohmann::json upload_event(const std::string& host, const UploadStats& stats);
nlohmann::json created_event(const std::string& host, const std::string& release,
                             const std::string& state);
nlohmann::json done_event(const DoneInfo& info);
nlohmann::json error_event(const common::Error& error, const std::string& host);
// An agent event passed through with "host" added.
nlohmann::json passthrough_event(const nlohmann::json& event, const std::string& host);
// {id, state, created_at, commit, message, error, host} from a release object.
nlohmann::json release_row(const nlohmann::json& release, const std::string& host);
// {app, production, url, releases, host} from a status object.
nlohmann::json status_object(const nlohmann::json& status, const std::string& host);
// {"event":"summary", command, ok, consistent, hosts: [...], exit_code} (docs/json.md).
nlohmann::json summary_event(const Summary& summary);

} // namespace cli::output
