#include <agent/api/http.hpp>

namespace agent::api {

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

} // namespace

bool percent_decode(std::string_view in, std::string& out) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out += in[i];
            continue;
        }
        if (i + 2 >= in.size())
            return false;
        const int high = hex_value(in[i + 1]);
        const int low = hex_value(in[i + 2]);
        if (high < 0 || low < 0)
            return false;
        out += static_cast<char>(high * 16 + low);
        i += 2;
    }
    return true;
}

Params parse_query(std::string_view query) {
    Params params;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (pair.empty())
            continue;
        const auto eq = pair.find('=');
        std::string key, value;
        if (!percent_decode(pair.substr(0, eq), key))
            continue;
        if (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), value))
            continue;
        params[key] = value;
    }
    return params;
}

bool flag_set(const Params& query, const std::string& name) {
    const auto it = query.find(name);
    if (it == query.end())
        return false;
    return it->second == "1" || it->second == "true" || it->second == "yes" || it->second.empty();
}

} // namespace agent::api
