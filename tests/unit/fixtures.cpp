// The one file compiled with the source tree's path (DEPLOYCTL_FIXTURES_DIR): every other
// test file stays the same in every clone, so the compiler cache serves them all.
#include "fixtures.hpp"

namespace test {

const std::filesystem::path& fixtures_dir() {
    static const std::filesystem::path dir(DEPLOYCTL_FIXTURES_DIR);
    return dir;
}

} // namespace test
