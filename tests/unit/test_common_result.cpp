// common/result.hpp: Result<T>, Status and the TRY / TRY_ASSIGN macros.
#include <common/result.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>

using common::ErrorKind;
using common::make_error;
using common::Result;
using common::Status;

namespace {

int g_calls = 0;

Status succeed() {
    ++g_calls;
    return {};
}

Status fail_io() {
    ++g_calls;
    return make_error(ErrorKind::io, "disk full");
}

Result<int> number(bool ok) {
    ++g_calls;
    if (!ok)
        return make_error(ErrorKind::not_found, "no number");
    return 42;
}

Result<std::unique_ptr<int>> boxed(bool ok) {
    if (!ok)
        return make_error(ErrorKind::refused, "no box");
    return std::make_unique<int>(7);
}

// TRY in a function returning Status, on a Status and on a Result<T>.
Status two_steps(bool first_ok, bool second_ok) {
    TRY(first_ok ? succeed() : fail_io());
    TRY(number(second_ok));
    return {};
}

// TRY and TRY_ASSIGN in a function returning Result<T>.
Result<int> doubled(bool status_ok, bool number_ok) {
    TRY(status_ok ? succeed() : fail_io());
    TRY_ASSIGN(const int n, number(number_ok));
    return 2 * n;
}

// TRY_ASSIGN into a variable declared before it, and of a move-only value.
Result<int> assigned(bool ok) {
    std::unique_ptr<int> box;
    TRY_ASSIGN(box, boxed(ok));
    return *box;
}

// TRY on an lvalue (a Status kept elsewhere) copies nothing out of it.
Status kept(const Status& status) {
    TRY(status);
    return {};
}

// `result` failed with this kind and message.
template <class R> void check_failed(const R& result, ErrorKind kind, const std::string& message) {
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().kind == kind);
    CHECK(result.error().message == message);
}

} // namespace

TEST_CASE("TRY returns the error of a failed Status or Result, and goes on otherwise") {
    g_calls = 0;
    CHECK(two_steps(true, true).ok());
    CHECK(g_calls == 2);

    SUBCASE("a failed Status") {
        g_calls = 0;
        check_failed(two_steps(false, true), ErrorKind::io, "disk full");
        CHECK(g_calls == 1); // returned before the second step
    }
    SUBCASE("a failed Result<int> in a function returning Status") {
        check_failed(two_steps(true, false), ErrorKind::not_found, "no number");
    }
    SUBCASE("an lvalue") {
        const Status failed = make_error(ErrorKind::auth, "who are you");
        CHECK(kept(Status{}).ok());
        check_failed(kept(failed), ErrorKind::auth, "who are you");
        CHECK(failed.error().message == "who are you");
    }
}

TEST_CASE("TRY_ASSIGN declares or assigns the value, or returns the error") {
    g_calls = 0;
    auto value = doubled(true, true);
    REQUIRE(value.ok());
    CHECK(*value == 84);
    CHECK(g_calls == 2); // each expression evaluated once

    SUBCASE("TRY before it fails") {
        check_failed(doubled(false, true), ErrorKind::io, "disk full");
    }
    SUBCASE("its own expression fails") {
        check_failed(doubled(true, false), ErrorKind::not_found, "no number");
    }
    SUBCASE("a move-only value into a declared variable") {
        auto box = assigned(true);
        REQUIRE(box.ok());
        CHECK(*box == 7);
        check_failed(assigned(false), ErrorKind::refused, "no box");
    }
}

TEST_CASE("exit codes follow docs/design.md §6") {
    CHECK(common::exit_code(ErrorKind::failed) == 1);
    CHECK(common::exit_code(ErrorKind::config) == 2);
    CHECK(common::exit_code(ErrorKind::usage) == 2);
    CHECK(common::exit_code(ErrorKind::connection) == 3);
    CHECK(common::exit_code(ErrorKind::auth) == 3);
    CHECK(common::exit_code(ErrorKind::timeout) == 4);
    CHECK(common::exit_code(ErrorKind::refused) == 5);
    CHECK(std::string(common::error_code(ErrorKind::refused)) == "refused");
    CHECK(common::exit_code(ErrorKind::disk_full) == 6);
    CHECK(std::string(common::error_code(ErrorKind::disk_full)) == "disk_full");
}
