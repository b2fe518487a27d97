#pragma once
// A TCP stream with a deadline, for deploy-proxy's client and upstream
// connections: an operation under way when the deadline passes ends with
// beast::error::timeout and the socket closed, as with beast::basic_stream.
//
// beast::basic_stream arms its timer for every read and write and cancels it
// when the operation ends (a timer queue insertion, a cancellation and the
// cancelled wait's handler run, per operation: four times per proxied
// request). Here a deadline is a time point stored by expires_after, and the
// stream's one timer is armed lazily: when an operation starts and the timer
// is not armed for the deadline or earlier. When it fires early (the deadline
// moved later since), it is armed again for the deadline if an operation is
// under way, else left alone until the next one starts. A connection that
// keeps answering in time arms its timer about once per timeout, not per
// operation.
//
// Used from its worker's thread only. The state (socket, timer, deadline)
// is shared with the operations under way, so the stream may be destroyed
// while one is: the socket is closed and the handler runs with
// operation_aborted.

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/handler_continuation_hook.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <utility>

namespace agent::proxy {

// A worker's sockets name its io_context's executor type: no type-erased
// executor copied and destroyed around every operation.
using Executor = boost::asio::io_context::executor_type;
using Socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>;

class DeadlineStream {
  public:
    using executor_type = Executor;
    using lowest_layer_type = Socket; // what asio::ssl::stream asks of its next layer
    using clock = std::chrono::steady_clock;

    explicit DeadlineStream(const Executor& executor)
        : m_state(std::make_shared<State>(executor)) {}
    explicit DeadlineStream(Socket socket) : m_state(std::make_shared<State>(std::move(socket))) {}
    DeadlineStream(DeadlineStream&&) noexcept = default;
    DeadlineStream& operator=(DeadlineStream&&) = delete;
    DeadlineStream(const DeadlineStream&) = delete;
    DeadlineStream& operator=(const DeadlineStream&) = delete;
    // Closes the socket, as beast::basic_stream does: an operation under way
    // ends aborted (it shares the state, the socket would live on with it).
    ~DeadlineStream() {
        if (m_state) {
            close();
        }
    }

    executor_type get_executor() noexcept { return m_state->socket.get_executor(); }
    Socket& socket() noexcept { return m_state->socket; }
    Socket& lowest_layer() noexcept { return m_state->socket; }

    // Operations under way or started from now on end with
    // beast::error::timeout once `timeout` has passed (until the deadline is
    // set again).
    void expires_after(clock::duration timeout) {
        State& s = *m_state;
        s.deadline = coarse_now() + timeout;
        if (s.busy() && s.deadline < s.armed) {
            arm(m_state);
        }
    }
    // No deadline for the operations under way or started from now on.
    void expires_never() { m_state->deadline = clock::time_point::max(); }

    // Closes the socket (operations under way end with operation_aborted) and
    // disarms the timer.
    void close() {
        State& s = *m_state;
        boost::system::error_code ignored;
        s.socket.close(ignored);
        disarm(s);
    }

    template <class Buffers, class Handler>
    void async_read_some(const Buffers& buffers, Handler&& handler) {
        m_state->socket.async_read_some(buffers,
                                        track(&State::reading, std::forward<Handler>(handler)));
    }
    template <class Buffers, class Handler>
    void async_write_some(const Buffers& buffers, Handler&& handler) {
        m_state->socket.async_write_some(buffers,
                                         track(&State::writing, std::forward<Handler>(handler)));
    }
    template <class Handler>
    void async_connect(const boost::asio::ip::tcp::endpoint& endpoint, Handler&& handler) {
        m_state->socket.async_connect(endpoint,
                                      track(&State::writing, std::forward<Handler>(handler)));
    }

    // CLOCK_MONOTONIC_COARSE: steady_clock's epoch, read without a clock
    // read of the hardware (a few milliseconds behind at most: a deadline
    // from it is that much early).
    static clock::time_point coarse_now() noexcept {
        timespec now{};
        ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
        return clock::time_point(std::chrono::seconds(now.tv_sec) +
                                 std::chrono::nanoseconds(now.tv_nsec));
    }

    // What follows is the stream's own: public for the associated_* traits below.
    struct State {
        explicit State(const Executor& executor) : socket(executor), timer(executor) {}
        explicit State(Socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
        bool busy() const noexcept { return reading || writing; }

        Socket socket;
        boost::asio::steady_timer timer;
        clock::time_point deadline = clock::time_point::max();
        clock::time_point armed = clock::time_point::max(); // max: the timer is not armed
        std::uint64_t generation = 0; // of the timer's wait: an older wait's handler is stale
        bool reading = false;         // a read is under way
        bool writing = false;         // a write or a connect is under way
        bool timed_out = false;
    };

    // The handler of an operation, wrapped: marks it done and reports a
    // closing by the deadline as a timeout. It forwards the wrapped handler's
    // executor, allocator (associated_* below) and continuation hook, as
    // Beast's binders do; deploy-proxy builds with BOOST_ASIO_NO_DEPRECATED,
    // where Asio asks no other hook.
    template <class Handler> struct Op {
        Handler handler;
        std::shared_ptr<State> state;
        bool State::*pending;

        template <class... Args> void operator()(boost::system::error_code ec, Args&&... args) {
            (*state).*pending = false;
            if (ec && state->timed_out) {
                ec = boost::beast::error::timeout;
            }
            state.reset();
            handler(ec, std::forward<Args>(args)...);
        }

        friend bool asio_handler_is_continuation(Op* op) {
            using boost::asio::asio_handler_is_continuation;
            return asio_handler_is_continuation(std::addressof(op->handler));
        }
    };

  private:
    // An operation starts: marked under way (`pending`), the timer armed if
    // it is not armed for the deadline or earlier; its handler, wrapped.
    template <class Handler>
    Op<std::decay_t<Handler>> track(bool State::*pending, Handler&& handler) {
        State& s = *m_state;
        s.*pending = true;
        if (s.deadline < s.armed) {
            arm(m_state);
        }
        return {std::forward<Handler>(handler), m_state, pending};
    }

    // Arms the timer for the deadline (an earlier wait is cancelled and stale).
    static void arm(const std::shared_ptr<State>& state) {
        State& s = *state;
        s.armed = s.deadline;
        s.timer.expires_at(s.deadline);
        s.timer.async_wait([weak = std::weak_ptr<State>(state),
                            generation = ++s.generation](boost::system::error_code ec) {
            if (ec == boost::asio::error::operation_aborted) {
                return; // armed again, disarmed or destroyed
            }
            auto state = weak.lock();
            if (!state || state->generation != generation) {
                return;
            }
            on_timer(state);
        });
    }
    static void disarm(State& s) {
        if (s.armed != clock::time_point::max()) {
            s.armed = clock::time_point::max();
            ++s.generation;
            s.timer.cancel();
        }
    }
    static void on_timer(const std::shared_ptr<State>& state) {
        State& s = *state;
        s.armed = clock::time_point::max();
        if (!s.busy() || s.deadline == clock::time_point::max()) {
            return; // the next operation arms it
        }
        if (clock::now() < s.deadline) {
            return arm(state); // the deadline moved later meanwhile
        }
        s.timed_out = true;
        boost::system::error_code ignored;
        s.socket.close(ignored);
    }

    std::shared_ptr<State> m_state;
};

} // namespace agent::proxy

namespace boost::asio {

template <class Handler, class E>
struct associated_executor<agent::proxy::DeadlineStream::Op<Handler>, E> {
    using type = associated_executor_t<Handler, E>;
    static type get(const agent::proxy::DeadlineStream::Op<Handler>& op,
                    const E& executor = E()) noexcept {
        return associated_executor<Handler, E>::get(op.handler, executor);
    }
};

template <class Handler, class A>
struct associated_allocator<agent::proxy::DeadlineStream::Op<Handler>, A> {
    using type = associated_allocator_t<Handler, A>;
    static type get(const agent::proxy::DeadlineStream::Op<Handler>& op,
                    const A& allocator = A()) noexcept {
        return associated_allocator<Handler, A>::get(op.handler, allocator);
    }
};

} // namespace boost::asio
