#include <common/env_name.hpp>

#include <array>
#include <string>

namespace common {

namespace {
constexpr std::array<std::string_view, 4> k_reserved = {"PORT", "PATH", "HOME", "LANG"};
constexpr std::size_t k_max_name = 255;

bool is_letter(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
} // namespace

Status check_env_name(std::string_view name) {
    bool valid = !name.empty() && name.size() <= k_max_name && is_letter(name[0]);
    for (char c : name)
        valid = valid && (is_letter(c) || (c >= '0' && c <= '9'));
    if (!valid)
        return make_error(ErrorKind::usage,
                          "'" + std::string(name.substr(0, 80)) +
                              "' is not a valid variable name (letters, digits and '_', not "
                              "starting with a digit)");
    for (auto reserved : k_reserved)
        if (name == reserved)
            return make_error(ErrorKind::usage, std::string(name) +
                                                    " is set by the agent itself and cannot be "
                                                    "changed (reserved: PORT, PATH, HOME, LANG)");
    return {};
}

} // namespace common
