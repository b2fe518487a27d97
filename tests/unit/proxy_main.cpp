// proxy_unit_tests' main: deploy-proxy's pieces built as the proxy builds them
// (tests/unit/CMakeLists.txt says why they are not in unit_tests).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
