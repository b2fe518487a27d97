#include <agent/proxy/accept_share.hpp>

#include <doctest/doctest.h>

using agent::proxy::AcceptShare;

TEST_CASE("AcceptShare: a worker holding clearly more than the least loaded other yields") {
    AcceptShare share(2);
    CHECK_FALSE(share.should_yield(0)); // 0 and 0
    share.set(0, 1);
    CHECK_FALSE(share.should_yield(0)); // 1 against 0
    share.set(0, 2);
    CHECK(share.should_yield(0)); // 2 against 0: leave the next one to worker 1
    CHECK_FALSE(share.should_yield(1));
    share.set(1, 1);
    CHECK_FALSE(share.should_yield(0)); // 2 against 1
    // Among many: an eighth more than the least loaded one is allowed as well.
    share.set(0, 81);
    share.set(1, 72);
    CHECK_FALSE(share.should_yield(0)); // 72 + 2 + 9 = 83
    share.set(0, 83);
    CHECK(share.should_yield(0));
}

TEST_CASE("AcceptShare: the least loaded of all the others counts; one worker never yields") {
    AcceptShare share(3);
    share.set(0, 10);
    share.set(1, 10);
    share.set(2, 0);
    CHECK(share.should_yield(0));
    CHECK(share.should_yield(1));
    CHECK_FALSE(share.should_yield(2));
    AcceptShare alone(1);
    alone.set(0, 1000);
    CHECK_FALSE(alone.should_yield(0));
}

TEST_CASE("AcceptShare: a burst of connections taken in turn spreads evenly") {
    // Worker 0 is always the first awake; it takes a connection unless it
    // yields, and then worker 1 takes it.
    AcceptShare share(2);
    std::size_t held[2] = {0, 0};
    for (int connection = 0; connection < 16; ++connection) {
        const std::size_t taker = share.should_yield(0) ? 1 : 0;
        share.set(taker, ++held[taker]);
    }
    CHECK(held[0] + held[1] == 16);
    CHECK(held[1] >= 7);
    CHECK(held[0] >= 7);
}
