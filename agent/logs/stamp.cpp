#include <agent/logs/stamp.hpp>

namespace agent::logs {

namespace {

// The shape of a stamp, "dddd-dd-ddTdd:dd:dd.ddddddZ", checked byte by byte.
bool is_stamp(std::string_view s) {
    static constexpr std::string_view k_shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (s.size() != k_shape.size())
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool ok = k_shape[i] == 'd' ? s[i] >= '0' && s[i] <= '9' : s[i] == k_shape[i];
        if (!ok)
            return false;
    }
    return true;
}

} // namespace

std::string stamp_now() {
    return common::format_micros(now_micros()) + ' ';
}

StampedLine split_stamp(std::string_view line) {
    if (line.size() >= k_stamp_size && line[k_stamp_size - 1] == ' ' &&
        is_stamp(line.substr(0, k_stamp_size - 1)))
        return {line.substr(0, k_stamp_size - 1), line.substr(k_stamp_size)};
    return {{}, line};
}

Micros stamp_time(std::string_view stamp) {
    return common::parse_rfc3339(stamp).value_or(0);
}

std::string restamp(std::string_view line, Micros now) {
    const auto space = line.find(' ');
    std::optional<Micros> at;
    if (space != std::string_view::npos)
        at = common::parse_rfc3339(line.substr(0, space));
    std::string out = common::format_micros(at.value_or(now));
    out += ' ';
    out.append(at ? line.substr(space + 1) : line);
    return out;
}

void LineStamper::stamp(std::string_view data, std::string& out, Micros now) {
    std::string stamp;
    while (!data.empty()) {
        if (m_at_line_start && data.front() != '\n') { // an empty line stays empty
            if (stamp.empty())
                stamp = common::format_micros(now) + ' ';
            out += stamp;
            m_at_line_start = false;
        }
        const auto newline = data.find('\n');
        if (newline == std::string_view::npos) {
            out.append(data);
            return;
        }
        out.append(data.substr(0, newline + 1));
        data.remove_prefix(newline + 1);
        m_at_line_start = true;
    }
}

} // namespace agent::logs
