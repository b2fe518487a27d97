#include <agent/proxy/upstream_pool.hpp>

#include <doctest/doctest.h>

using agent::proxy::UpstreamConnection;
using agent::proxy::UpstreamPool;
using agent::proxy::UpstreamPtr;

namespace {

struct Pool {
    boost::asio::io_context context;
    UpstreamPool pool{3};
    UpstreamPtr make() { return std::make_unique<UpstreamConnection>(context.get_executor()); }
};

} // namespace

TEST_CASE("UpstreamPool: the most recently given back is taken first (LIFO), per upstream") {
    Pool p;
    auto a = p.make();
    auto b = p.make();
    auto* first = a.get();
    auto* second = b.get();
    p.pool.give_back("127.0.0.1:1", std::move(a));
    p.pool.give_back("127.0.0.1:1", std::move(b));
    CHECK(p.pool.take("127.0.0.1:2") == nullptr);
    auto taken = p.pool.take("127.0.0.1:1");
    CHECK(taken.get() == second);
    CHECK(taken->reused);
    CHECK(p.pool.take("127.0.0.1:1").get() == first);
    CHECK(p.pool.take("127.0.0.1:1") == nullptr);
}

TEST_CASE("UpstreamPool: keeps at most its size per upstream") {
    Pool p;
    for (int i = 0; i < 5; ++i)
        p.pool.give_back("127.0.0.1:1", p.make());
    p.pool.give_back("127.0.0.1:2", p.make());
    CHECK(p.pool.idle() == 4); // 3 + 1
}

TEST_CASE("UpstreamPool: sweep closes the connections idle past their age, oldest first") {
    Pool p;
    p.pool.give_back("127.0.0.1:1", p.make());
    p.pool.give_back("127.0.0.1:1", p.make());
    const auto now = std::chrono::steady_clock::now();
    p.pool.sweep(now + std::chrono::seconds(30));
    CHECK(p.pool.idle() == 2);
    p.pool.sweep(now + std::chrono::seconds(61));
    CHECK(p.pool.idle() == 0);
    CHECK(p.pool.take("127.0.0.1:1") == nullptr);
}
