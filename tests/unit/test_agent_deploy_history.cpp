// agent/deploy/history.cpp: when each release served, and where `rollback` with no id goes.
#include <agent/deploy/history.hpp>

#include <doctest/doctest.h>

using agent::ReleaseRow;
using agent::SwitchRow;
using common::ErrorKind;
using common::State;

namespace {

ReleaseRow release(const std::string& id, State state) {
    ReleaseRow row;
    row.app = "web";
    row.id = id;
    row.seq = *common::release_number(id);
    row.state = state;
    return row;
}

// A history of switches to these releases, in order (ts "t1", "t2", ...).
std::vector<SwitchRow> history(const std::vector<std::string>& ids) {
    std::vector<SwitchRow> rows;
    std::string previous;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        rows.push_back({"t" + std::to_string(i + 1), ids[i], previous, "deploy"});
        previous = ids[i];
    }
    return rows;
}

} // namespace

TEST_CASE("previous_release: the release that served before the current one") {
    std::vector<ReleaseRow> rows{release("v3", State::production), release("v2", State::inactive),
                                 release("v1", State::inactive)};
    CHECK(*agent::previous_release(history({"v1", "v2", "v3"}), rows) == "v2");
}

TEST_CASE("previous_release: after a rollback, the next one returns to where it was") {
    // v1, v2 deployed; rollback to v1: v2 served before it.
    std::vector<ReleaseRow> rows{release("v2", State::inactive), release("v1", State::production)};
    CHECK(*agent::previous_release(history({"v1", "v2", "v1"}), rows) == "v2");
    // rollback v1 from v6: v6 served before, not an older one.
    std::vector<ReleaseRow> six{release("v6", State::inactive), release("v5", State::inactive),
                                release("v1", State::production)};
    CHECK(*agent::previous_release(history({"v1", "v5", "v6", "v1"}), six) == "v6");
}

TEST_CASE("previous_release: goes further back past removed and FAILED releases") {
    std::vector<ReleaseRow> rows{release("v5", State::production), release("v4", State::failed),
                                 release("v2", State::inactive), release("v1", State::inactive)};
    // v3 was pruned, v4 is FAILED (ids are never reused: another row under its id).
    CHECK(*agent::previous_release(history({"v1", "v2", "v3", "v4", "v5"}), rows) == "v2");
    // A release that served several times counts once, at its latest.
    CHECK(*agent::previous_release(history({"v2", "v1", "v3", "v1", "v5"}), rows) == "v1");
}

TEST_CASE("previous_release: says why when nothing is left") {
    SUBCASE("the first release that served") {
        std::vector<ReleaseRow> rows{release("v1", State::production)};
        auto none = agent::previous_release(history({"v1"}), rows);
        REQUIRE_FALSE(none);
        CHECK(none.error().kind == ErrorKind::refused);
        CHECK(none.error().message.find("v1 is the first release of web that served") !=
              std::string::npos);
    }
    SUBCASE("every earlier one removed") {
        std::vector<ReleaseRow> rows{release("v3", State::production)};
        auto none = agent::previous_release(history({"v1", "v2", "v3"}), rows);
        REQUIRE_FALSE(none);
        CHECK(none.error().kind == ErrorKind::refused);
        CHECK(none.error().message.find("v2 was removed and v1 was removed") != std::string::npos);
        CHECK(none.error().message.find("deploy.keep") != std::string::npos);
    }
}

TEST_CASE("previous_release: without a history of the current release, the older INACTIVE one") {
    std::vector<ReleaseRow> rows{release("v4", State::inactive), release("v3", State::production),
                                 release("v2", State::inactive), release("v1", State::inactive)};
    CHECK(*agent::previous_release({}, rows) == "v2");
    CHECK(*agent::previous_release(history({"v1", "v2"}), rows) == "v2");
    std::vector<ReleaseRow> first{release("v1", State::production)};
    CHECK_FALSE(agent::previous_release({}, first));
}

TEST_CASE("served_spans: each switch starts a span, the next ends it") {
    auto spans = agent::served_spans(history({"v1", "v2", "v1", "v3"}));
    REQUIRE(spans["v1"].size() == 2);
    CHECK(spans["v1"][0].from == "t1");
    CHECK(spans["v1"][0].until == "t2");
    CHECK(spans["v1"][1].from == "t3");
    CHECK(spans["v1"][1].until == "t4");
    REQUIRE(spans["v3"].size() == 1);
    CHECK(spans["v3"][0].until.empty()); // still serving
    CHECK(spans.count("v4") == 0);
    CHECK(agent::served_spans({}).empty());
}
