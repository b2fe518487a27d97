#pragma once
// An app's history of PRODUCTION switches (the switches table, docs/design.md §3 and §8):
// which release served when, and which release `rollback` with no id goes back to. Pure
// functions of the rows the store returns, so the choices have unit tests.

#include <agent/deploy/service.hpp>
#include <agent/store/store.hpp>
#include <common/result.hpp>

#include <map>
#include <string>
#include <vector>

namespace agent {

// The times each release served, oldest first: a switch to it starts a span, the next
// switch (to any release) ends it; the last one is still open ("" until).
std::map<std::string, std::vector<ServedSpan>> served_spans(const std::vector<SwitchRow>& history);

// The release `rollback` with no id goes to: the one that served before the current
// PRODUCTION, going further back in `history` (oldest first) past releases since removed
// or no longer INACTIVE. `releases` are the app's rows (any order). With no switch to the
// current release in the history (a database older than it), the newest INACTIVE release
// older than PRODUCTION. ErrorKind::refused, saying why, when there is none.
common::Result<std::string> previous_release(const std::vector<SwitchRow>& history,
                                             const std::vector<ReleaseRow>& releases);

} // namespace agent
