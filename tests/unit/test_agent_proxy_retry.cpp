// agent/proxy/retry.hpp: when a failed upstream attempt may be sent again,
// and the per-app rate limit of 502/504 log lines.
#include <agent/proxy/retry.hpp>

#include <doctest/doctest.h>

using agent::proxy::Attempt;
using agent::proxy::LogLimiter;
using agent::proxy::Retry;
using agent::proxy::retry_after_failure;

TEST_CASE("a stale pooled connection: a GET is retried on a fresh one, once") {
    Attempt get{.idempotent = true, .reused = true, .request_written = true};
    CHECK(retry_after_failure(get) == Retry::fresh);
    get.stale_retried = true;
    CHECK(retry_after_failure(get) == Retry::next_upstream);
}

TEST_CASE("a POST that was written is never sent again, pooled connection or not") {
    Attempt post{.idempotent = false, .reused = true, .request_written = true};
    CHECK(retry_after_failure(post) == Retry::none);
    post.reused = false;
    CHECK(retry_after_failure(post) == Retry::none);
}

TEST_CASE("a POST of which no byte was written may go again") {
    Attempt post{.idempotent = false, .reused = true, .request_written = false};
    CHECK(retry_after_failure(post) == Retry::fresh);
    post.reused = false; // connect refused
    CHECK(retry_after_failure(post) == Retry::next_upstream);
}

TEST_CASE("a streamed body partly read from the client is never replayed, even for a PUT") {
    Attempt put{.idempotent = true, .reused = true, .request_written = true, .body_consumed = true};
    CHECK(retry_after_failure(put) == Retry::none);
    put.reused = false;
    CHECK(retry_after_failure(put) == Retry::none);
}

TEST_CASE("a byte of response or a timeout: no retry") {
    Attempt get{.idempotent = true, .reused = true, .request_written = true};
    get.got_response_bytes = true;
    CHECK(retry_after_failure(get) == Retry::none);
    get.got_response_bytes = false;
    get.timed_out = true;
    CHECK(retry_after_failure(get) == Retry::none);
}

TEST_CASE("502/504 log lines: at most N per second per app, then the count of the held back") {
    LogLimiter limiter(3);
    const auto t0 = LogLimiter::Clock::time_point{} + std::chrono::hours(1);
    for (int i = 0; i < 3; ++i) {
        auto v = limiter.admit("web", t0);
        CHECK(v.log);
        CHECK(v.suppressed == 0);
    }
    for (int i = 0; i < 10; ++i) {
        CHECK_FALSE(limiter.admit("web", t0 + std::chrono::milliseconds(100)).log);
    }
    CHECK(limiter.admit("api", t0).log); // another app has its own budget
    auto next = limiter.admit("web", t0 + std::chrono::milliseconds(1001));
    CHECK(next.log);
    CHECK(next.suppressed == 10);
    CHECK(limiter.admit("web", t0 + std::chrono::milliseconds(1002)).suppressed == 0);
}
