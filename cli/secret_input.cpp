#include <cli/secret_input.hpp>

#include <iostream>
#include <iterator>
#include <termios.h>
#include <unistd.h>

namespace cli {

common::Result<std::string> read_secret(std::string_view prompt, std::string_view what) {
    std::string value;
    if (isatty(STDIN_FILENO)) {
        std::cerr << prompt << std::flush;
        termios saved{};
        bool hide = tcgetattr(STDIN_FILENO, &saved) == 0;
        if (hide) {
            termios quiet = saved;
            quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        }
        std::getline(std::cin, value);
        if (hide)
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        std::cerr << '\n';
    } else {
        value.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        if (!value.empty() && value.back() == '\n')
            value.pop_back();
        if (!value.empty() && value.back() == '\r')
            value.pop_back();
    }
    if (value.empty())
        return common::make_error(common::ErrorKind::usage,
                                  "no " + std::string(what) + " was read from stdin");
    return value;
}

} // namespace cli
