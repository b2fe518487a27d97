// agent/auth/login_throttle.cpp: failed logins counted per address, one
// summary per address and minute, blocks that double, on a fake clock; and
// agent/api/auth_gate.cpp counting what it refuses on TCP only.
#include <agent/api/auth_gate.hpp>
#include <agent/auth/auth_store.hpp>
#include <agent/auth/login_throttle.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "temp_dir.hpp"

using namespace agent::auth;
using namespace std::chrono_literals;

namespace {

struct FakeClock {
    std::chrono::steady_clock::time_point now{std::chrono::hours(1000)};
    LoginThrottle::Clock clock() {
        return [this] { return now; };
    }
};

LoginFailure failure(std::string address, int status = 401) {
    return {std::move(address), "dpa_0123456789ab", "POST", "/v1/apps/web/deployments", status};
}

// Sends `n` failures from `address`, returns how many summaries came out.
int fail_n(LoginThrottle& t, const std::string& address, int n, int status = 401) {
    int lines = 0;
    for (int i = 0; i < n; ++i)
        lines += t.failed(failure(address, status)) ? 1 : 0;
    return lines;
}

} // namespace

TEST_CASE("login throttle: below the limit, one summary when the minute ends") {
    FakeClock c;
    LoginThrottle t({20, 60s, 60s, 3600s}, c.clock());
    CHECK(fail_n(t, "203.0.113.9", 19) == 0);
    CHECK_FALSE(t.blocked("203.0.113.9"));
    c.now += 59s;
    CHECK(t.due().empty());
    c.now += 1s;
    auto due = t.due();
    REQUIRE(due.size() == 1);
    CHECK(due[0].address == "203.0.113.9");
    CHECK(due[0].count == 19);
    CHECK(due[0].span == 60s);
    CHECK(due[0].token_prefix == "dpa_0123456789ab");
    CHECK(due[0].method == "POST");
    CHECK(due[0].status == 401);
    CHECK(t.due().empty()); // said once
    CHECK(failed_logins_line(due[0]) == "auth: 19 failed logins from 203.0.113.9 in the last 60s, "
                                        "last token name prefix dpa_0123456789ab…");
}

TEST_CASE("login throttle: a failure after the minute closes it first") {
    FakeClock c;
    LoginThrottle t({20, 60s, 60s, 3600s}, c.clock());
    CHECK(fail_n(t, "2001:db8::1", 3) == 0);
    c.now += 61s;
    auto line = t.failed(failure("2001:db8::1"));
    REQUIRE(line);
    CHECK(line->count == 3); // the new failure opens the next minute
    CHECK(line->span == 60s);
    CHECK(failed_logins_line(*line) ==
          "auth: 3 failed logins from 2001:db8::1 in the last 60s, last token name prefix "
          "dpa_0123456789ab…");
    auto rest = t.flush();
    REQUIRE(rest.size() == 1);
    CHECK(rest[0].count == 1);
    CHECK(rest[0].span == 1s);
}

TEST_CASE("login throttle: the limit blocks the address, others unaffected") {
    FakeClock c;
    LoginThrottle t({20, 60s, 60s, 3600s}, c.clock());
    CHECK(fail_n(t, "198.51.100.7", 19) == 0);
    c.now += 3s;
    // The 20th failure starts the block and says so at once.
    auto line = t.failed(failure("198.51.100.7"));
    REQUIRE(line);
    CHECK(line->count == 20);
    CHECK(line->span == 3s);
    REQUIRE(t.blocked("198.51.100.7"));
    CHECK(*t.blocked("198.51.100.7") == 60s);
    CHECK_FALSE(t.blocked("198.51.100.8"));
    CHECK(fail_n(t, "198.51.100.8", 5) == 0);

    SUBCASE("refusals while blocked count, but neither extend it nor log twice a minute") {
        c.now += 10s;
        CHECK(fail_n(t, "198.51.100.7", 1000, 429) == 0);
        CHECK(*t.blocked("198.51.100.7") == 50s);
        c.now += 49s;
        CHECK(*t.blocked("198.51.100.7") == 1s);
        c.now += 500ms;
        CHECK(*t.blocked("198.51.100.7") == 1s); // rounded up
        c.now += 500ms;
        CHECK_FALSE(t.blocked("198.51.100.7"));
        // The minute of 429s, opened 10 s after the block began, ends 60 s later.
        c.now += 10s;
        auto due = t.due();
        REQUIRE(due.size() == 2); // and 198.51.100.8's
        for (const auto& s : due) {
            if (s.address == "198.51.100.7") {
                CHECK(s.count == 1000);
                CHECK(s.status == 429);
            } else {
                CHECK(s.count == 5);
            }
        }
    }
    SUBCASE("a repeated offence doubles the block, up to the cap") {
        std::chrono::seconds expected = 60s;
        for (int offence = 2; offence <= 9; ++offence) {
            c.now += *t.blocked("198.51.100.7");
            CHECK_FALSE(t.blocked("198.51.100.7"));
            fail_n(t, "198.51.100.7", 20);
            expected = std::min(expected * 2, std::chrono::seconds(3600s));
            REQUIRE(t.blocked("198.51.100.7"));
            CHECK(*t.blocked("198.51.100.7") == expected);
        }
        CHECK(expected == 3600s);
        // An hour and more without an offence forgets them.
        c.now += *t.blocked("198.51.100.7") + 3601s;
        fail_n(t, "198.51.100.7", 20);
        CHECK(*t.blocked("198.51.100.7") == 60s);
    }
}

TEST_CASE("login throttle: a second block within a minute of a line is said at the minute's end") {
    FakeClock c;
    LoginThrottle t({20, 60s, 10s, 3600s}, c.clock());
    CHECK(fail_n(t, "198.51.100.7", 20) == 1); // blocked for 10 s, said at once
    c.now += 10s;
    CHECK_FALSE(t.blocked("198.51.100.7"));
    CHECK(fail_n(t, "198.51.100.7", 20) == 0); // blocked again, 10 s after the line
    CHECK(*t.blocked("198.51.100.7") == 20s);
    c.now += 59s;
    CHECK(t.due().empty());
    c.now += 1s;
    auto due = t.due();
    REQUIRE(due.size() == 1);
    CHECK(due[0].count == 20);
    CHECK(due[0].span == 60s);
}

TEST_CASE("login throttle: a client without an address is counted, never blocked") {
    FakeClock c;
    LoginThrottle t({20, 60s, 60s, 3600s}, c.clock());
    CHECK(fail_n(t, "", 100) == 0);
    CHECK_FALSE(t.blocked(""));
    c.now += 60s;
    REQUIRE(t.due().size() == 1);
}

TEST_CASE("login throttle: a limit of 0 counts and never blocks") {
    FakeClock c;
    LoginThrottle t({0, 60s, 60s, 3600s}, c.clock());
    CHECK(fail_n(t, "203.0.113.9", 500) == 0);
    CHECK_FALSE(t.blocked("203.0.113.9"));
    c.now += 60s;
    REQUIRE(t.due().size() == 1);
}

TEST_CASE("login throttle: what is over is forgotten; a full table sums the rest") {
    FakeClock c;
    LoginThrottle t({20, 60s, 60s, 3600s}, c.clock());
    fail_n(t, "203.0.113.9", 1);
    CHECK(t.tracked() == 1);
    c.now += 60s;
    CHECK(t.due().size() == 1);
    CHECK(t.tracked() == 1); // its line is recent: a new one must wait a minute
    c.now += 60s;
    CHECK(t.due().empty());
    CHECK(t.tracked() == 0);

    for (std::size_t i = 0; i < LoginThrottle::k_max_addresses; ++i)
        t.failed(failure("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256)));
    CHECK(t.tracked() == LoginThrottle::k_max_addresses);
    CHECK(fail_n(t, "203.0.113.10", 100) == 0);
    CHECK_FALSE(t.blocked("203.0.113.10")); // summed under "(other addresses)", never blocked
    CHECK_FALSE(t.blocked(std::string(LoginThrottle::k_other_addresses)));
    const auto all = t.flush();
    CHECK(all.size() == LoginThrottle::k_max_addresses + 1);
    bool other = false;
    for (const auto& s : all)
        if (s.address == LoginThrottle::k_other_addresses)
            other = s.count == 100;
    CHECK(other);
}

TEST_CASE("login throttle: only a token's public part is ever logged") {
    CHECK(token_prefix("") == "");
    CHECK(token_prefix("dpa_0123456789ab_" + std::string(43, 'S')) == "dpa_0123456789ab");
    CHECK(token_prefix("dpa_0123456789abcdef") == "dpa_0123456789ab");
    CHECK(token_prefix("dpa_zz") == "dpa_");
    CHECK(token_prefix("ghp_SECRETSECRET") == "ghp_");
    CHECK(token_prefix("eyJhbGciOi") == "eyJh");
    CHECK(token_prefix("a b") == "a");
    CHECK(token_prefix("\x01secret") == "(unprintable)");
    FailedLogins none;
    none.address = "::1";
    none.count = 1;
    none.span = 1s;
    CHECK(failed_logins_line(none) ==
          "auth: 1 failed logins from ::1 in the last 1s, last token name prefix (none)");
}

TEST_CASE("auth gate: failed logins on TCP are counted, throttled and audited per minute") {
    test::TempDir dir;
    auto store = AuthStore::open(dir.path() / "state.db");
    REQUIRE(store);
    auto created = (*store)->create({"ci", "", Scope::deploy, ""});
    REQUIRE(created);
    FakeClock c;
    LoginThrottle throttle({3, 60s, 60s, 3600s}, c.clock());
    agent::api::AuthGate gate(**store, &throttle);
    agent::api::Route route;
    route.access = agent::api::Access::by_method;
    auto ask = [&](const std::string& address, const std::string& authorization) {
        agent::api::Request request;
        request.peer.address = address;
        request.peer.unix_socket = address.empty();
        request.method = "POST";
        request.path = "/v1/apps/web/deployments";
        request.params["app"] = "web";
        auto refused = gate.admit(request, &route, authorization);
        agent::api::Response response;
        response.status = refused ? refused->status : 201;
        if (refused)
            response = *refused;
        gate.record(request, response);
        return response;
    };
    const std::string wrong = "Bearer dpa_" + created->info.id + "_" + std::string(43, 'A');
    const std::string valid = "Bearer " + created->token;

    CHECK(ask("127.0.0.1", wrong).status == 401);
    CHECK(ask("127.0.0.1", "").status == 401);
    CHECK((*store)->audit({})->empty());          // not one row per failure
    CHECK(ask("127.0.0.1", wrong).status == 401); // the 3rd: blocked, and a row
    auto rows = (*store)->audit({});
    REQUIRE(rows->size() == 1);
    CHECK((*rows)[0].who == "address:127.0.0.1");
    CHECK((*rows)[0].count == 3);
    CHECK((*rows)[0].token_name == "dpa_" + created->info.id + "…");
    CHECK((*rows)[0].status == 401);
    CHECK((*rows)[0].error_code == "unauthorized");
    CHECK((*rows)[0].app.empty());

    // A valid token from the blocked address: 429 with Retry-After.
    const auto refused = ask("127.0.0.1", valid);
    CHECK(refused.status == 429);
    bool retry_after = false;
    for (const auto& [name, value] : refused.headers)
        retry_after = retry_after || (name == "Retry-After" && value == "60");
    CHECK(retry_after);
    // Another address, and the unix socket, are served.
    CHECK(ask("127.0.0.2", valid).status == 201);
    CHECK(ask("", "").status == 201);
    CHECK((*store)->audit({})->size() == 3); // the two calls served

    c.now += 60s;
    CHECK(ask("127.0.0.1", valid).status == 201);
    gate.report_due();
    rows = (*store)->audit({});
    REQUIRE(rows->size() == 5);
    CHECK((*rows)[0].who == "address:127.0.0.1"); // the minute of the one 429
    CHECK((*rows)[0].count == 1);
    CHECK((*rows)[0].status == 429);
    CHECK((*rows)[0].error_code == "too_many_failed_logins");
    CHECK((*rows)[1].who == "token:" + created->info.id);
}
