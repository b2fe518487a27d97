#pragma once
// The NDJSON event log of one deployment (DATA_DIR/apps/APP/logs/ID.ndjson):
// state, log and health events (docs/api.md "Events"). Each event is written
// as one whole line with a single write() on an O_APPEND descriptor, so the
// API's tailers see complete lines as soon as they happen.

#include <common/state.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace agent {

class EventLog {
  public:
    EventLog(std::filesystem::path file, std::string release)
        : m_file(std::move(file)), m_release(std::move(release)) {}

    void state(common::State state, std::string_view message = {}) const;
    // stream: "build", "app" or "system".
    void log(std::string_view stream, std::string_view line) const;
    void health(bool ok, int status, std::string_view message) const;

    const std::filesystem::path& file() const { return m_file; }

  private:
    void append(const std::string& line) const;
    std::filesystem::path m_file;
    std::string m_release;
};

} // namespace agent
