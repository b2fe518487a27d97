#include <common/result.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_CASE("exit codes follow docs/design.md §6") {
    using common::ErrorKind;
    CHECK(common::exit_code(ErrorKind::failed) == 1);
    CHECK(common::exit_code(ErrorKind::config) == 2);
    CHECK(common::exit_code(ErrorKind::usage) == 2);
    CHECK(common::exit_code(ErrorKind::connection) == 3);
    CHECK(common::exit_code(ErrorKind::auth) == 3);
    CHECK(common::exit_code(ErrorKind::timeout) == 4);
    CHECK(common::exit_code(ErrorKind::refused) == 5);
    CHECK(std::string(common::error_code(ErrorKind::refused)) == "refused");
}
