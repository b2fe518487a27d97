#include <cli/output/format.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <vector>

namespace cli::output {

std::string short_commit(std::string_view sha) {
    return std::string(sha.substr(0, 7));
}

std::string short_time(std::string_view rfc3339) {
    std::string text(rfc3339.substr(0, 19));
    if (text.size() > 10 && text[10] == 'T')
        text[10] = ' ';
    return text;
}

std::string format_elapsed(std::int64_t ms) {
    if (ms < 0)
        ms = 0;
    if (ms < 1000)
        return fmt::format("{}ms", ms);
    if (ms < 60'000)
        return fmt::format("{:.1f}s", static_cast<double>(ms) / 1000.0);
    std::int64_t s = ms / 1000;
    if (s < 3600)
        return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string json_str(const nlohmann::json& object, const char* key) {
    if (!object.is_object())
        return {};
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string served_text(const nlohmann::json& release) {
    if (!release.is_object())
        return "";
    auto served = release.find("served");
    if (served == release.end() || !served->is_array())
        return "";
    constexpr std::size_t k_shown = 3;
    std::vector<std::string> closed;
    std::string since;
    for (const auto& span : *served) {
        auto from = short_time(json_str(span, "from"));
        auto until = short_time(json_str(span, "until"));
        if (until.empty()) {
            since = "serving since " + from;
            continue;
        }
        // The same day: only the time of the end.
        if (until.size() > 11 && from.compare(0, 10, until, 0, 10) == 0)
            until = until.substr(11);
        closed.push_back(from + " to " + until);
    }
    const std::size_t earlier = closed.size() > k_shown ? closed.size() - k_shown : 0;
    std::string text;
    for (std::size_t i = earlier; i < closed.size(); ++i)
        text += (i == earlier ? "served " : ", ") + closed[i];
    if (earlier)
        text += fmt::format(" (and {} time{} before)", earlier, earlier == 1 ? "" : "s");
    if (!since.empty())
        text += (text.empty() ? "" : ", ") + since;
    return text;
}

bool json_true(const nlohmann::json& object, const char* key) {
    if (!object.is_object())
        return false;
    auto it = object.find(key);
    return it != object.end() && it->is_boolean() && it->get<bool>();
}

} // namespace cli::output
