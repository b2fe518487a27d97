// The deployment state machine of docs/design.md §3 (common/state.hpp).
#include <common/state.hpp>

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <utility>

using common::State;

namespace {

const State k_all[] = {State::queued,   State::building, State::provisioning, State::production,
                       State::inactive, State::failed,   State::canary};

const std::set<std::pair<State, State>> k_allowed = {
    {State::queued, State::building},         {State::queued, State::failed},
    {State::building, State::provisioning},   {State::building, State::failed},
    {State::provisioning, State::production}, {State::provisioning, State::failed},
    {State::production, State::inactive},     {State::inactive, State::production},
    {State::provisioning, State::canary},     {State::canary, State::production},
    {State::canary, State::failed},
};

std::string name(State s) {
    return std::string(common::to_string(s));
}

} // namespace

TEST_CASE("every allowed transition is allowed") {
    for (const auto& [from, to] : k_allowed) {
        CAPTURE(name(from));
        CAPTURE(name(to));
        CHECK(common::can_transition(from, to));
    }
}

TEST_CASE("every other transition is forbidden") {
    int forbidden = 0;
    for (State from : k_all)
        for (State to : k_all) {
            if (k_allowed.count({from, to}))
                continue;
            CAPTURE(name(from));
            CAPTURE(name(to));
            CHECK_FALSE(common::can_transition(from, to));
            ++forbidden;
        }
    CHECK(forbidden == 49 - 11);
}

TEST_CASE("FAILED is terminal and PRODUCTION only leaves for INACTIVE") {
    for (State to : k_all)
        CHECK_FALSE(common::can_transition(State::failed, to));
    CHECK_FALSE(common::can_transition(State::production, State::failed));
    CHECK_FALSE(common::can_transition(State::queued, State::production));
}

TEST_CASE("only FAILED and INACTIVE releases can be deleted") {
    for (State s : k_all) {
        CAPTURE(name(s));
        CHECK(common::can_delete(s) == (s == State::failed || s == State::inactive));
    }
}

TEST_CASE("only INACTIVE releases can be promoted") {
    for (State s : k_all) {
        CAPTURE(name(s));
        CHECK(common::can_promote(s) == (s == State::inactive));
    }
}

TEST_CASE("settled states end a deployment") {
    for (State s : k_all) {
        CAPTURE(name(s));
        bool settled = s == State::production || s == State::inactive || s == State::failed ||
                       s == State::canary;
        CHECK(common::is_settled(s) == settled);
    }
}

TEST_CASE("state names round trip") {
    for (State s : k_all)
        CHECK(common::parse_state(common::to_string(s)) == s);
    CHECK(common::to_string(State::production) == "PRODUCTION");
    CHECK(common::to_string(State::queued) == "QUEUED");
    CHECK_FALSE(common::parse_state("production").has_value());
    CHECK_FALSE(common::parse_state("").has_value());
    CHECK_FALSE(common::parse_state("DELETED").has_value());
}

TEST_CASE("canary: PROVISIONING -> CANARY -> PRODUCTION | FAILED, nothing else") {
    CHECK(common::can_transition(State::provisioning, State::canary));
    CHECK(common::can_transition(State::canary, State::production));
    CHECK(common::can_transition(State::canary, State::failed));
    CHECK_FALSE(common::can_transition(State::canary, State::inactive));
    CHECK_FALSE(common::can_transition(State::production, State::canary));
    CHECK_FALSE(common::can_transition(State::inactive, State::canary));
    CHECK_FALSE(common::can_transition(State::building, State::canary));
    CHECK(common::is_settled(State::canary)); // deployctl deploy --canary returns there
    CHECK_FALSE(common::can_delete(State::canary));
    CHECK_FALSE(common::can_promote(State::canary)); // promoted by canary promote, not rollback
    CHECK(common::parse_state("CANARY") == State::canary);
    CHECK(common::to_string(State::canary) == "CANARY");
}
