#pragma once
// The deployment state machine of docs/design.md §3, in one place.
//
//   QUEUED -> BUILDING -> PROVISIONING -> PRODUCTION -> INACTIVE -> PRODUCTION (rollback)
//   QUEUED | BUILDING | PROVISIONING -> FAILED
//   PROVISIONING -> CANARY -> PRODUCTION (canary promote) | FAILED (canary abort)
//
// The agent's store applies transitions with a compare-and-set on the current
// state and a partial unique index that allows one PRODUCTION per app.

#include <cstdint>
#include <optional>
#include <string_view>

namespace common {

enum class State { queued, building, provisioning, production, inactive, failed, canary };

std::string_view to_string(State state);
std::optional<State> parse_state(std::string_view text);

// Whether `from -> to` is an allowed transition.
bool can_transition(State from, State to);
// A deployment in this state is finished: following it stops here.
bool is_settled(State state);
// Only FAILED and INACTIVE releases may be deleted.
bool can_delete(State state);
// Only INACTIVE releases may be promoted back to PRODUCTION (rollback).
bool can_promote(State state);

// A release id's number: "v12" -> 12; nullopt for anything that is not v1, v2, ...
// (no leading zero, at most 11 digits).
std::optional<std::int64_t> release_number(std::string_view id);

} // namespace common
