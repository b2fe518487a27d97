#pragma once
// Result<T>: the expected-style return type used across the project.
// Errors carry a kind that users must be able to tell apart (it maps to the
// exit codes in docs/design.md §6) and a human-readable message. TRY and TRY_ASSIGN
// (at the end) pass an error up to the caller.

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace common {

enum class ErrorKind {
    usage,       // bad command line
    config,      // deploy.toml or agent config invalid (message has file:line:col)
    connection,  // cannot reach an agent
    auth,        // agent refused our credentials
    timeout,     // waited too long
    refused,     // a rule forbids it (e.g. deleting the PRODUCTION release)
    failed,      // the deployment failed (build, health, startup timeout)
    not_found,   // no such app / release / blob
    bad_request, // malformed input sent to the agent
    io,          // local file system or process error
    disk_full,   // no space left (ENOSPC, EDQUOT, or the agent's --min-free reserve)
    internal,    // a bug or unexpected condition
};

struct Error {
    ErrorKind kind = ErrorKind::internal;
    std::string message;
};

// The process exit code docs/design.md §6 assigns to each kind of error.
int exit_code(ErrorKind kind);
// Short stable name used in JSON error objects ("config", "refused", ...).
const char* error_code(ErrorKind kind);

inline Error make_error(ErrorKind kind, std::string message) {
    return Error{kind, std::move(message)};
}

template <class T> class [[nodiscard]] Result {
  public:
    Result(T value) : m_value(std::move(value)) {}
    Result(Error error) : m_error(std::move(error)) {}

    bool ok() const { return m_value.has_value(); }
    explicit operator bool() const { return ok(); }

    T& value() & {
        assert(ok());
        return *m_value;
    }
    const T& value() const& {
        assert(ok());
        return *m_value;
    }
    T&& value() && {
        assert(ok());
        return std::move(*m_value);
    }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const {
        assert(!ok());
        return *m_error;
    }

  private:
    std::optional<T> m_value;
    std::optional<Error> m_error;
};

template <> class [[nodiscard]] Result<void> {
  public:
    Result() = default;
    Result(Error error) : m_error(std::move(error)) {}

    bool ok() const { return !m_error.has_value(); }
    explicit operator bool() const { return ok(); }
    const Error& error() const {
        assert(!ok());
        return *m_error;
    }

  private:
    std::optional<Error> m_error;
};

using Status = Result<void>;

} // namespace common

// TRY(expr): when `expr` (a Status or a Result<T>) failed, returns its error
// from the enclosing function (which returns a Status or any Result<U>).
#define TRY(expr_)                                                                                 \
    do {                                                                                           \
        if (auto&& try_result_ = (expr_); !try_result_)                                            \
            return try_result_.error();                                                            \
    } while (false)

// TRY_ASSIGN(target, expr): when the Result<T> `expr` failed, returns its
// error as TRY does; else moves its value into `target`: a variable it
// declares (`TRY_ASSIGN(auto rows, query())`) or anything assignable
// (`TRY_ASSIGN(out.port, read_port())`). It is several statements: an `if`
// or a loop that holds it needs braces (without them it does not compile).
// One per line.
#define TRY_ASSIGN(target_, expr_)                                                                 \
    TRY_ASSIGN_IMPL_(TRY_CONCAT_(try_assign_, __LINE__), target_, expr_)
#define TRY_ASSIGN_IMPL_(result_, target_, expr_)                                                  \
    auto result_ = (expr_);                                                                        \
    if (!result_)                                                                                  \
        return result_.error();                                                                    \
    target_ = std::move(result_).value()
#define TRY_CONCAT_(a_, b_) TRY_CONCAT_IMPL_(a_, b_)
#define TRY_CONCAT_IMPL_(a_, b_) a_##b_
