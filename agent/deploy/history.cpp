#include <agent/deploy/history.hpp>

#include <fmt/format.h>

#include <set>

namespace agent {

using common::ErrorKind;
using common::make_error;
using common::State;

std::map<std::string, std::vector<ServedSpan>> served_spans(const std::vector<SwitchRow>& history) {
    std::map<std::string, std::vector<ServedSpan>> spans;
    for (std::size_t i = 0; i < history.size(); ++i)
        spans[history[i].release].push_back(
            {history[i].ts, i + 1 < history.size() ? history[i + 1].ts : std::string()});
    return spans;
}

namespace {

// Before the history was kept: the newest INACTIVE release older than PRODUCTION.
common::Result<std::string> by_sequence(const std::vector<ReleaseRow>& releases,
                                        const ReleaseRow* production) {
    const ReleaseRow* best = nullptr;
    for (const auto& row : releases)
        if (row.state == State::inactive && (!production || row.seq < production->seq) &&
            (!best || row.seq > best->seq))
            best = &row;
    if (best)
        return best->id;
    return make_error(ErrorKind::refused, "no earlier release to roll back to");
}

} // namespace

common::Result<std::string> previous_release(const std::vector<SwitchRow>& history,
                                             const std::vector<ReleaseRow>& releases) {
    std::map<std::string, const ReleaseRow*> by_id;
    const ReleaseRow* production = nullptr;
    for (const auto& row : releases) {
        by_id[row.id] = &row;
        if (row.state == State::production)
            production = &row;
    }
    std::size_t last = history.size(); // the switch to the current release
    if (production)
        for (std::size_t i = history.size(); i-- > 0;)
            if (history[i].release == production->id) {
                last = i;
                break;
            }
    if (!production || last == history.size())
        return by_sequence(releases, production);
    std::set<std::string> seen{production->id};
    std::vector<std::string> gone; // served before, cannot be gone back to: why
    for (std::size_t i = last; i-- > 0;) {
        const std::string& id = history[i].release;
        if (!seen.insert(id).second)
            continue;
        auto row = by_id.find(id);
        if (row == by_id.end()) {
            gone.push_back(id + " was removed");
            continue;
        }
        if (row->second->state == State::inactive)
            return id;
        gone.push_back(fmt::format("{} is {}", id, common::to_string(row->second->state)));
    }
    if (gone.empty())
        return make_error(ErrorKind::refused,
                          fmt::format("no earlier release to roll back to: {} is the first "
                                      "release of {} that served",
                                      production->id, production->app));
    std::string why;
    for (std::size_t i = 0; i < gone.size(); ++i)
        why += (i == 0 ? "" : i + 1 == gone.size() ? " and " : ", ") + gone[i];
    return make_error(ErrorKind::refused,
                      fmt::format("no earlier release to roll back to: of the releases that "
                                  "served before {}, {} (deploy.keep sets how many are kept); "
                                  "to serve one of them again, deploy its commit",
                                  production->id, why));
}

} // namespace agent
