#pragma once
// The NDJSON event log of one deployment (DATA_DIR/apps/APP/logs/ID.ndjson):
// state, log and health events (docs/api.md "Events"). Each event is written
// as one whole line with a single write() on an O_APPEND descriptor, so the
// API's tailers see complete lines as soon as they happen. Secret values are
// redacted before anything is written (redact_with).

#include <common/state.hpp>

#include <agent/secrets/redact.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace agent {

class EventLog {
  public:
    EventLog(std::filesystem::path file, std::string release)
        : m_file(std::move(file)), m_release(std::move(release)) {}

    void state(common::State state, std::string_view message = {}) const;
    // stream: "build", "release" (the [release] command), "app" or "system".
    void log(std::string_view stream, std::string_view line) const;
    void health(bool ok, int status, std::string_view message) const;

    const std::filesystem::path& file() const { return m_file; }
    // From now on every message and line is written with these secrets
    // replaced by "[redacted]".
    void redact_with(std::shared_ptr<const secrets::Redactor> redactor) {
        m_redactor = std::move(redactor);
    }
    std::string redact(std::string_view text) const {
        return m_redactor ? m_redactor->apply(text) : std::string(text);
    }

  private:
    void append(const std::string& line) const;
    std::filesystem::path m_file;
    std::string m_release;
    std::shared_ptr<const secrets::Redactor> m_redactor;
};

} // namespace agent
