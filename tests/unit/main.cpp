// The unit tests' main. The engine starts each app's log writer by running its
// own executable as `EXE log-redact --file LOG --max-size N --keep K` (see
// agent/runtime/log_redact.hpp): in the tests that executable is this one, so
// it plays that part too instead of running the tests again.
#define DOCTEST_CONFIG_IMPLEMENT
#include <agent/runtime/log_redact.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <string_view>

namespace {

int log_writer(int argc, char** argv) {
    agent::runtime::LogWriterOptions options;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string_view flag = argv[i];
        if (flag == "--file")
            options.file = argv[i + 1];
        else if (flag == "--max-size")
            options.max_size = std::strtoull(argv[i + 1], nullptr, 10);
        else if (flag == "--keep")
            options.keep = std::atoi(argv[i + 1]);
        else
            return 2;
    }
    return agent::runtime::log_redact_main(options);
}

} // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::string_view(argv[1]) == "log-redact")
        return log_writer(argc, argv);
    return doctest::Context(argc, argv).run();
}
