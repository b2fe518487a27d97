#pragma once
// Loads routes.json into the current table. A missing or malformed file never
// drops routing: the previous table stays (docs/design.md §2, §7). Pure logic + files.

#include <agent/proxy/routes.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <memory>

namespace agent::proxy {

class RouteLoader {
  public:
    RouteLoader(std::filesystem::path routes, std::filesystem::path applied);

    // Reads the file now. On success the new table becomes current and is
    // returned. A missing file gives an empty table only if no file was ever
    // loaded; otherwise, and on a malformed file, the current table stays and
    // the error is returned. A file that could not be read counts as changed
    // (changed() is true), so that the next check reads it again.
    common::Result<std::shared_ptr<const RouteTable>> reload();
    // True when the file's identity, size or mtime differ from the last reload().
    bool changed() const;
    const std::shared_ptr<const RouteTable>& table() const { return m_table; }
    // Tells the agent which generation is live: writes it to the applied file.
    common::Status write_applied(std::uint64_t generation) const;

  private:
    struct Stamp {
        bool exists = false;
        std::uint64_t inode = 0, size = 0;
        std::int64_t mtime_ns = 0;
        bool operator==(const Stamp&) const = default;
    };
    Stamp stamp() const;

    std::filesystem::path m_routes;
    std::filesystem::path m_applied;
    Stamp m_seen;
    bool m_loaded_file = false;
    std::shared_ptr<const RouteTable> m_table;
};

} // namespace agent::proxy
