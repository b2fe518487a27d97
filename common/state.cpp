#include <common/state.hpp>

#include <array>
#include <utility>

namespace common {

namespace {
constexpr std::array<std::pair<State, std::string_view>, 7> k_names{{
    {State::queued, "QUEUED"},
    {State::building, "BUILDING"},
    {State::provisioning, "PROVISIONING"},
    {State::production, "PRODUCTION"},
    {State::inactive, "INACTIVE"},
    {State::failed, "FAILED"},
    {State::canary, "CANARY"},
}};
} // namespace

std::string_view to_string(State state) {
    for (const auto& [s, name] : k_names)
        if (s == state)
            return name;
    return "UNKNOWN";
}

std::optional<State> parse_state(std::string_view text) {
    for (const auto& [s, name] : k_names)
        if (name == text)
            return s;
    return std::nullopt;
}

bool can_transition(State from, State to) {
    switch (from) {
    case State::queued:
        return to == State::building || to == State::failed;
    case State::building:
        return to == State::provisioning || to == State::failed;
    case State::provisioning:
        return to == State::production || to == State::canary || to == State::failed;
    case State::canary: // deployctl canary promote | abort
        return to == State::production || to == State::failed;
    case State::production:
        return to == State::inactive;
    case State::inactive:
        return to == State::production;
    case State::failed:
        return false;
    }
    return false;
}

bool is_settled(State state) {
    return state == State::production || state == State::inactive || state == State::failed ||
           state == State::canary;
}

bool can_delete(State state) {
    return state == State::failed || state == State::inactive;
}

bool can_promote(State state) {
    return state == State::inactive;
}

std::optional<std::int64_t> release_number(std::string_view id) {
    if (id.size() < 2 || id.size() > 12 || id[0] != 'v' || id[1] == '0')
        return std::nullopt;
    std::int64_t number = 0;
    for (char c : id.substr(1)) {
        if (c < '0' || c > '9')
            return std::nullopt;
        number = number * 10 + (c - '0');
    }
    return number;
}

} // namespace common
