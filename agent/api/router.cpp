#include <agent/api/router.hpp>

namespace agent::api {

std::vector<std::string> split_path(std::string_view path) {
    std::vector<std::string> segments;
    if (path.empty() || path.front() != '/')
        return segments;
    path.remove_prefix(1);
    while (true) {
        const auto slash = path.find('/');
        segments.emplace_back(path.substr(0, slash));
        if (slash == std::string_view::npos)
            break;
        path.remove_prefix(slash + 1);
    }
    return segments;
}

bool match_pattern(std::string_view pattern, std::string_view path, Params& params) {
    const auto want = split_path(pattern);
    const auto have = split_path(path);
    if (want.size() != have.size() || have.empty())
        return false;
    Params captured;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const auto& w = want[i];
        if (w.size() > 2 && w.front() == '{' && w.back() == '}') {
            std::string value;
            if (have[i].empty() || !percent_decode(have[i], value))
                return false;
            captured[w.substr(1, w.size() - 2)] = std::move(value);
        } else if (w != have[i]) {
            return false;
        }
    }
    params = std::move(captured);
    return true;
}

void Router::add(std::string method, std::string pattern, Handler handler, BodyKind body,
                 Access access) {
    m_routes.push_back(
        Route{std::move(method), std::move(pattern), body, std::move(handler), access});
}

Match Router::match(std::string_view method, std::string_view path) const {
    Match result;
    for (const auto& route : m_routes) {
        Params params;
        if (!match_pattern(route.pattern, path, params))
            continue;
        if (route.method != method) {
            result.result = MatchResult::method_not_allowed;
            continue;
        }
        result.result = MatchResult::found;
        result.route = &route;
        result.params = std::move(params);
        return result;
    }
    return result;
}

} // namespace agent::api
