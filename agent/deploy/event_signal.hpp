#pragma once
// Every event written to any release's event log (EventLog) is counted here, so
// a follower of a release's events (GET .../events?follow=1) wakes as soon as a
// line is written instead of finding it on its next poll of the file: a
// deployment's last event reaches `deployctl deploy` at once, not up to a poll
// interval later.

#include <chrono>
#include <cstdint>
#include <filesystem>

namespace agent::event_signal {

// How many events have been written so far to this event log (counted per
// group of files: another log of the same group may count too, which only
// wakes a follower early).
std::uint64_t count(const std::filesystem::path& event_log);
// Called by EventLog after each line written to `event_log`.
void announce(const std::filesystem::path& event_log);
// Returns when count(event_log) differs from `seen` (at once if it already
// does) or after `timeout`, whichever comes first.
void wait_after(const std::filesystem::path& event_log, std::uint64_t seen,
                std::chrono::milliseconds timeout);

} // namespace agent::event_signal
