// deploy-proxy's connections' deadlines (DeadlineStream): an operation under
// way when the deadline passes ends with beast::error::timeout and the socket
// closed; one that ends in time is not touched, nor is an idle connection; a
// deadline moved later or earlier while an operation is under way counts.
// Real sockets over loopback, one io_context run by the test.
#include <agent/proxy/deadline_stream.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <vector>

using namespace agent::proxy;
namespace asio = boost::asio;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

// Connects `stream` to `peer` over 127.0.0.1.
void connect(asio::io_context& context, DeadlineStream& stream, Socket& peer) {
    asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
    stream.socket().connect(acceptor.local_endpoint());
    acceptor.accept(peer);
}

// A connected pair: `stream` (the one under test) and `peer`.
struct Pair {
    asio::io_context context{1};
    DeadlineStream stream{context.get_executor()};
    Socket peer{context.get_executor()};

    Pair() { connect(context, stream, peer); }
};

// The outcome of one operation: its error and when it ended.
struct Done {
    boost::system::error_code ec;
    std::size_t bytes = 0;
    Clock::time_point at;
};

// The handler of an operation: records its outcome in `done`.
auto record(std::optional<Done>& done) {
    return [&done](boost::system::error_code ec, std::size_t n) {
        done = Done{ec, n, Clock::now()};
    };
}

// Starts a read of one byte from `stream` into `done`.
void read_one(DeadlineStream& stream, char& byte, std::optional<Done>& done) {
    stream.async_read_some(asio::buffer(&byte, 1), record(done));
}

// Writes one byte from the peer after `delay`, from the test's own io_context.
void send_after(Pair& pair, asio::steady_timer& timer, milliseconds delay) {
    timer.expires_after(delay);
    timer.async_wait([&pair](boost::system::error_code ec) {
        if (!ec) {
            asio::write(pair.peer, asio::buffer("x", 1));
        }
    });
}

// Runs `context` for `time`, or until it runs out of work (it can be run again).
void run_for(asio::io_context& context, milliseconds time) {
    context.restart();
    context.run_for(time);
}

// Runs until `done` is set (or 5 s).
void run_until(asio::io_context& context, const std::optional<Done>& done) {
    const auto limit = Clock::now() + std::chrono::seconds(5);
    while (!done && Clock::now() < limit) {
        run_for(context, milliseconds(10));
    }
    REQUIRE(done.has_value());
}

} // namespace

TEST_CASE("DeadlineStream: a read under way when the deadline passes ends with timeout") {
    Pair pair;
    char byte = 0;
    std::optional<Done> done;
    const auto started = Clock::now();
    pair.stream.expires_after(milliseconds(150));
    read_one(pair.stream, byte, done);
    run_until(pair.context, done);
    CHECK(done->ec == boost::beast::error::timeout);
    const auto took = done->at - started;
    // CLOCK_MONOTONIC_COARSE may make it a few milliseconds early, never late by much.
    CHECK(took >= milliseconds(130));
    CHECK(took < milliseconds(1000));
    CHECK_FALSE(pair.stream.socket().is_open());
    // The peer sees the connection closed.
    boost::system::error_code ec;
    asio::read(pair.peer, asio::buffer(&byte, 1), ec);
    CHECK(ec == asio::error::eof);
}

TEST_CASE("DeadlineStream: reads that end in time are not touched, over many deadlines") {
    Pair pair;
    asio::steady_timer sender(pair.context);
    char byte = 0;
    // Each read has 200 ms and its byte comes after 60: over 8 reads the first deadlines
    // pass long before the last read, whose timer was armed for one of them and fires early.
    for (int i = 0; i < 8; ++i) {
        std::optional<Done> done;
        pair.stream.expires_after(milliseconds(200));
        read_one(pair.stream, byte, done);
        send_after(pair, sender, milliseconds(60));
        run_until(pair.context, done);
        CHECK_MESSAGE(!done->ec, "read " << i << ": " << done->ec.message());
        CHECK(done->bytes == 1);
    }
    CHECK(pair.stream.socket().is_open());
}

TEST_CASE("DeadlineStream: an idle connection past its deadline is left open; the next "
          "operation without a new deadline times out at once") {
    Pair pair;
    asio::steady_timer sender(pair.context);
    char byte = 0;
    std::optional<Done> first;
    pair.stream.expires_after(milliseconds(100));
    read_one(pair.stream, byte, first);
    send_after(pair, sender, milliseconds(10));
    run_until(pair.context, first);
    REQUIRE_FALSE(first->ec);
    // Idle past the deadline, its timer fired meanwhile: nothing to end.
    run_for(pair.context, milliseconds(250));
    CHECK(pair.stream.socket().is_open());
    // A read now, the deadline long gone: a timeout, as with beast::basic_stream.
    std::optional<Done> late;
    read_one(pair.stream, byte, late);
    run_until(pair.context, late);
    CHECK(late->ec == boost::beast::error::timeout);
}

TEST_CASE("DeadlineStream: a deadline moved later while a read waits lets it finish") {
    Pair pair;
    asio::steady_timer sender(pair.context);
    char byte = 0;
    std::optional<Done> done;
    pair.stream.expires_after(milliseconds(100));
    read_one(pair.stream, byte, done);
    pair.stream.expires_after(milliseconds(600)); // the timer stays armed for 100 ms
    send_after(pair, sender, milliseconds(300));
    run_until(pair.context, done);
    CHECK_FALSE(done->ec);
    CHECK(done->bytes == 1);
}

TEST_CASE("DeadlineStream: a deadline moved later while a read waits ends it at the later one") {
    Pair pair;
    char byte = 0;
    std::optional<Done> done;
    const auto started = Clock::now();
    pair.stream.expires_after(milliseconds(100));
    read_one(pair.stream, byte, done);
    pair.stream.expires_after(milliseconds(400)); // the timer fires at 100 ms, then again
    run_until(pair.context, done);
    CHECK(done->ec == boost::beast::error::timeout);
    CHECK(done->at - started >= milliseconds(380));
}

TEST_CASE("DeadlineStream: a deadline moved earlier while a read waits ends it then") {
    Pair pair;
    char byte = 0;
    std::optional<Done> done;
    pair.stream.expires_after(std::chrono::seconds(30));
    read_one(pair.stream, byte, done);
    const auto moved = Clock::now();
    pair.stream.expires_after(milliseconds(100));
    run_until(pair.context, done);
    CHECK(done->ec == boost::beast::error::timeout);
    CHECK(done->at - moved < milliseconds(1000));
}

TEST_CASE("DeadlineStream: no deadline, no timeout") {
    Pair pair;
    asio::steady_timer sender(pair.context);
    char byte = 0;
    std::optional<Done> done;
    pair.stream.expires_after(milliseconds(50));
    pair.stream.expires_never();
    read_one(pair.stream, byte, done);
    send_after(pair, sender, milliseconds(300));
    run_until(pair.context, done);
    CHECK_FALSE(done->ec);
}

TEST_CASE("DeadlineStream: a write blocked by a peer that reads nothing times out") {
    Pair pair;
    // The peer reads nothing: the write fills both sockets' buffers and waits.
    std::vector<char> big(64 * 1024 * 1024, 'x');
    std::optional<Done> done;
    pair.stream.expires_after(milliseconds(200));
    asio::async_write(pair.stream, asio::buffer(big), record(done));
    run_until(pair.context, done);
    CHECK(done->ec == boost::beast::error::timeout);
    CHECK(done->bytes < big.size());
}

TEST_CASE("DeadlineStream: destroyed with a read under way and its timer armed") {
    asio::io_context context{1};
    Socket peer(context.get_executor());
    std::optional<Done> done;
    char byte = 0;
    {
        DeadlineStream stream(context.get_executor());
        connect(context, stream, peer);
        stream.expires_after(std::chrono::seconds(60));
        read_one(stream, byte, done);
    }
    // The read ends aborted, and the timer's wait does not keep the socket open for
    // its 60 s: the peer reads the end of the stream now.
    run_until(context, done);
    CHECK(done->ec == asio::error::operation_aborted);
    boost::system::error_code ec;
    asio::read(peer, asio::buffer(&byte, 1), ec);
    CHECK(ec == asio::error::eof);
}
