#include <agent/proxy/route_loader.hpp>
#include <common/fs.hpp>

#include <sys/stat.h>

namespace agent::proxy {

RouteLoader::RouteLoader(std::filesystem::path routes, std::filesystem::path applied)
    : m_routes(std::move(routes)), m_applied(std::move(applied)),
      m_table(std::make_shared<const RouteTable>()) {}

RouteLoader::Stamp RouteLoader::stamp() const {
    struct stat st {};
    if (::stat(m_routes.c_str(), &st) != 0) {
        return {};
    }
    return Stamp{true, static_cast<std::uint64_t>(st.st_ino),
                 static_cast<std::uint64_t>(st.st_size),
                 static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

bool RouteLoader::changed() const {
    return stamp() != m_seen;
}

common::Result<std::shared_ptr<const RouteTable>> RouteLoader::reload() {
    // Stamp before reading: a write racing with the read shows up as a change.
    m_seen = stamp();
    if (!m_seen.exists) {
        if (m_loaded_file) {
            return common::make_error(common::ErrorKind::not_found,
                                      m_routes.string() + " disappeared; keeping generation " +
                                          std::to_string(m_table->generation()));
        }
        m_table = std::make_shared<const RouteTable>();
        return m_table;
    }
    auto text = common::read_file(m_routes);
    if (!text) {
        // A file that could not be read (not a malformed one) is read again
        // at the next check, changed or not.
        m_seen = {};
        return text.error();
    }
    auto table = parse_routes(*text, m_routes.string());
    if (!table) {
        return table.error();
    }
    m_loaded_file = true;
    m_table = std::make_shared<const RouteTable>(std::move(*table));
    return m_table;
}

common::Status RouteLoader::write_applied(std::uint64_t generation) const {
    return common::atomic_write_file(m_applied, std::to_string(generation) + "\n");
}

} // namespace agent::proxy
