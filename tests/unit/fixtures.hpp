#pragma once
// Where the fixture folders are (tests/fixtures/), read in place.

#include <filesystem>

namespace test {

// tests/fixtures/ of the source tree the tests were built from.
const std::filesystem::path& fixtures_dir();

} // namespace test
