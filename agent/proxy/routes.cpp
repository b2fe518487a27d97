#include <agent/proxy/routes.hpp>
#include <common/address.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_set>

namespace agent::proxy {
namespace {

using common::ErrorKind;
using nlohmann::json;

bool is_host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

char to_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Strips ":port" (and the brackets of an IPv6 literal).
std::string_view strip_port(std::string_view host) {
    if (!host.empty() && host.front() == '[') {
        auto close = host.find(']');
        return close == std::string_view::npos ? std::string_view{} : host.substr(1, close - 1);
    }
    auto colon = host.find(':');
    return colon == std::string_view::npos ? host : host.substr(0, colon);
}

common::Error malformed(std::string_view source, const std::string& why) {
    return common::make_error(ErrorKind::config, std::string(source) + ": " + why);
}

const std::string* string_field(const json& object, const char* key) {
    auto it = object.find(key);
    return (it != object.end() && it->is_string()) ? it->get_ptr<const std::string*>() : nullptr;
}

// "static": {"root": "/abs/dir", "spa": true}
common::Status parse_static(const json& item, const std::string& where, std::string_view source,
                            Route& route) {
    if (!item.is_object()) {
        return malformed(source, where + " must be an object");
    }
    const std::string* root = string_field(item, "root");
    if (root == nullptr || root->empty() || root->front() != '/' ||
        root->find('\0') != std::string::npos) {
        return malformed(source, where + ".root must be an absolute directory path");
    }
    route.static_root = *root;
    if (auto spa = item.find("spa"); spa != item.end()) {
        if (!spa->is_boolean()) {
            return malformed(source, where + ".spa must be true or false");
        }
        route.spa = spa->get<bool>();
    }
    return {};
}

common::Result<Upstream> parse_address(const json& item, const std::string& where,
                                       std::string_view source) {
    const std::string* value = item.is_string() ? item.get_ptr<const std::string*>() : nullptr;
    if (value == nullptr || value->empty()) {
        return malformed(source, where + " must be a non-empty string");
    }
    auto parsed = common::parse_host_port(*value);
    if (!parsed || parsed->port == 0) {
        return malformed(source, where + " must be IP:PORT, got \"" + *value + "\"");
    }
    return Upstream{*value, std::move(parsed->host), parsed->port, {}};
}

// "limits": {"max_body": 104857600, "connect_timeout_ms": 5000, "read_timeout_ms": 60000,
// "websocket_idle_ms": 3600000}; each optional.
common::Status parse_limits(const json& item, const std::string& where, std::string_view source,
                            Route& route) {
    if (!item.is_object()) {
        return malformed(source, where + " must be an object");
    }
    for (const auto& [key, value] : item.items()) {
        if (!value.is_number_unsigned()) {
            return malformed(source, where + "." + key + " must be a whole number, at least 0");
        }
        const auto number = value.get<std::uint64_t>();
        if (key == "max_body") {
            route.max_body = number;
            continue;
        }
        std::chrono::milliseconds* field = key == "connect_timeout_ms"  ? &route.connect_timeout
                                           : key == "read_timeout_ms"   ? &route.read_timeout
                                           : key == "websocket_idle_ms" ? &route.websocket_idle
                                                                        : nullptr;
        if (field == nullptr) {
            return malformed(source, where + " has an unknown key \"" + key + "\"");
        }
        if (number == 0 || number > 1000ull * 1000 * 1000 * 1000) {
            return malformed(source, where + "." + key + " must be 1 to 10^12 milliseconds");
        }
        *field = std::chrono::milliseconds(static_cast<std::int64_t>(number));
    }
    return {};
}

// "upstream": "127.0.0.1:41234"
common::Status parse_upstream(const json& item, const std::string& where, std::string_view source,
                              Route& route) {
    auto upstream = parse_address(item, where, source);
    if (!upstream) {
        return upstream.error();
    }
    route.upstreams.push_back(std::move(*upstream));
    return {};
}

// "upstreams": ["127.0.0.1:41234", "127.0.0.1:41235"]
common::Status parse_upstreams(const json& item, const std::string& where, std::string_view source,
                               Route& route) {
    if (!item.is_array() || item.empty() || item.size() > k_max_upstreams) {
        return malformed(source, where + " must be an array of 1 to " +
                                     std::to_string(k_max_upstreams) + " \"IP:PORT\" strings");
    }
    std::unordered_set<std::string> seen;
    for (std::size_t i = 0; i < item.size(); ++i) {
        auto upstream = parse_address(item[i], where + "[" + std::to_string(i) + "]", source);
        if (!upstream) {
            return upstream.error();
        }
        if (!seen.insert(upstream->key).second) {
            return malformed(source, where + " has \"" + upstream->key + "\" twice");
        }
        route.upstreams.push_back(std::move(*upstream));
    }
    return {};
}

// "instances": ["web.1", "web.2"]: the name of each upstream, in the same
// order (what the access log says answered a request).
common::Status parse_instances(const json& item, const std::string& where, std::string_view source,
                               Route& route) {
    if (!item.is_array() || item.size() != route.upstreams.size()) {
        return malformed(source, where + " must be an array with one name per upstream");
    }
    for (std::size_t i = 0; i < item.size(); ++i) {
        const auto* name = item[i].get_ptr<const std::string*>();
        if (name == nullptr || name->empty() || name->size() > 64 ||
            name->find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-_") !=
                std::string::npos) {
            return malformed(source, where + "[" + std::to_string(i) +
                                         "] must be an instance name such as \"web.2\"");
        }
        route.upstreams[i].name = *name;
    }
    return {};
}

// A maintenance page: a regular file of at most k_max_maintenance_page bytes,
// not reached through a symbolic link (the release's tree is the app's: a link
// to a secret of this machine is not served).
common::Result<std::string> read_page(const std::string& path) {
    auto fail = [&](int error) {
        return common::make_error(ErrorKind::io,
                                  "cannot read " + path + ": " + std::strerror(error));
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return fail(errno);
    }
    struct stat info {};
    std::string text;
    int error = 0;
    if (::fstat(fd, &info) != 0) {
        error = errno;
    } else if (!S_ISREG(info.st_mode)) {
        error = EINVAL;
    } else if (static_cast<std::uint64_t>(info.st_size) > k_max_maintenance_page) {
        ::close(fd);
        return common::make_error(ErrorKind::io, path + " is larger than 1 MiB");
    } else {
        text.resize(static_cast<std::size_t>(info.st_size));
        std::size_t got = 0;
        while (got < text.size()) {
            const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                error = n < 0 ? errno : 0;
                break;
            }
            got += static_cast<std::size_t>(n);
        }
        text.resize(got);
    }
    ::close(fd);
    if (error != 0) {
        return fail(error);
    }
    return text;
}

// HTML-escapes the operator's message for the built-in page.
std::string html_escape(std::string_view text) {
    std::string out;
    for (const char c : text) {
        switch (c) {
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '&':
            out += "&amp;";
            break;
        case '"':
            out += "&quot;";
            break;
        default:
            out += c;
        }
    }
    return out;
}

// "maintenance": {"message": "...", "retry_after": 300, "page": "/abs/maintenance.html"},
// each optional. A page that cannot be read leaves the built-in one (logged).
common::Status parse_maintenance(const json& item, const std::string& where,
                                 std::string_view source, Route& route) {
    if (!item.is_object()) {
        return malformed(source, where + " must be an object");
    }
    auto maintenance = std::make_shared<Maintenance>();
    for (const auto& [key, value] : item.items()) {
        if (key == "message" && value.is_string() &&
            value.get_ref<const std::string&>().size() <= 4096) {
            maintenance->message = value.get<std::string>();
        } else if (key == "retry_after" && value.is_number_unsigned() &&
                   value.get<std::uint64_t>() <= 366ull * 24 * 3600) {
            maintenance->retry_after = value.get<std::uint64_t>();
        } else if (key == "page" && value.is_string() &&
                   std::filesystem::path(value.get<std::string>()).is_absolute()) {
            auto page = read_page(value.get<std::string>());
            if (page) {
                maintenance->page = std::move(*page);
            } else {
                common::log_warn(fmt::format("{}: {}; answering with the built-in maintenance "
                                             "page",
                                             route.app, page.error().message));
            }
        } else if (key == "message" || key == "retry_after" || key == "page") {
            return malformed(source,
                             where + "." + key +
                                 (key == "message" ? " must be a string of at most 4096 bytes"
                                  : key == "page"  ? " must be an absolute path"
                                                   : " must be 0 to 31622400 seconds"));
        } else {
            return malformed(source, where + " has an unknown key \"" + key + "\"");
        }
    }
    const std::string message = maintenance->message.empty()
                                    ? route.app + " is down for maintenance"
                                    : maintenance->message;
    if (maintenance->page.empty()) {
        maintenance->page = fmt::format(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0} is down for "
            "maintenance</title></head>\n<body><h1>Down for maintenance</h1>\n<p>{1}</p>"
            "</body></html>\n",
            route.app, html_escape(message));
    }
    json answer{{"error", message}, {"maintenance", true}};
    if (maintenance->retry_after != 0) {
        answer["retry_after"] = maintenance->retry_after;
    }
    maintenance->json = answer.dump() + "\n";
    route.maintenance = std::move(maintenance);
    return {};
}

// "pause": {"timeout_ms": 30000}
common::Status parse_pause(const json& item, const std::string& where, std::string_view source,
                           Route& route) {
    const json* timeout = item.is_object() && item.size() == 1 && item.contains("timeout_ms")
                              ? &item["timeout_ms"]
                              : nullptr;
    if (timeout == nullptr || !timeout->is_number_unsigned() ||
        timeout->get<std::uint64_t>() == 0 || timeout->get<std::uint64_t>() > 24ull * 3600 * 1000) {
        return malformed(source, where + " must be {\"timeout_ms\": N} with N from 1 to "
                                         "86400000");
    }
    route.pause = std::chrono::milliseconds(timeout->get<std::int64_t>());
    return {};
}

// "sleeping": {"timeout_ms": 60000[, "error": "cannot start ..."]}
common::Status parse_sleeping(const json& item, const std::string& where, std::string_view source,
                              Route& route) {
    bool ok = item.is_object() && item.contains("timeout_ms") &&
              item.size() == (item.contains("error") ? 2u : 1u);
    const json* timeout = ok ? &item["timeout_ms"] : nullptr;
    ok = ok && timeout->is_number_unsigned() && timeout->get<std::uint64_t>() > 0 &&
         timeout->get<std::uint64_t>() <= 24ull * 3600 * 1000;
    if (ok && item.contains("error")) {
        ok = item["error"].is_string() && !item["error"].get<std::string>().empty();
    }
    if (!ok) {
        return malformed(source, where + " must be {\"timeout_ms\": N} with N from 1 to "
                                         "86400000, and an \"error\" text after a failed start");
    }
    route.wake = std::chrono::milliseconds(timeout->get<std::int64_t>());
    if (item.contains("error")) {
        const std::string message = route.app +
                                    " could not be started: " + item["error"].get<std::string>() +
                                    "; the next request tries again";
        route.wake_error = message + "\n";
        route.wake_error_json = json{{"error", message}}.dump() + "\n";
    }
    return {};
}

void finish_upstreams(Route& route) {
    if (!route.upstreams.empty()) {
        const Upstream& first = route.upstreams.front();
        route.upstream = first.key;
        route.upstream_address = first.address;
        route.upstream_port = first.port;
        if (route.upstreams.size() > 1) {
            route.balance = std::make_shared<Balance>(route.upstreams.size());
        }
    }
}

// "canary": {"release": "v5", "percent": 10, "upstreams": [...], "instances": [...]}
common::Status parse_canary(const json& item, const std::string& where, std::string_view source,
                            Route& route) {
    if (!item.is_object()) {
        return malformed(source, where + " must be an object");
    }
    Route side;
    side.host = route.host;
    side.app = route.app;
    side.max_body = route.max_body;
    side.connect_timeout = route.connect_timeout;
    side.read_timeout = route.read_timeout;
    side.websocket_idle = route.websocket_idle;
    const std::string* release = string_field(item, "release");
    if (release == nullptr || release->empty() ||
        release->find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") != std::string::npos) {
        return malformed(source, where + ".release must be a release id such as \"v5\"");
    }
    side.release = *release;
    auto percent = item.find("percent");
    if (percent == item.end() || !percent->is_number_integer() ||
        percent->get<std::int64_t>() < 0 || percent->get<std::int64_t>() > 100) {
        return malformed(source, where + ".percent must be an integer from 0 to 100");
    }
    auto upstreams = item.find("upstreams");
    if (upstreams == item.end()) {
        return malformed(source, where + ".upstreams is missing");
    }
    if (auto read = parse_upstreams(*upstreams, where + ".upstreams", source, side); !read) {
        return read.error();
    }
    if (auto instances = item.find("instances"); instances != item.end()) {
        if (auto read = parse_instances(*instances, where + ".instances", source, side); !read) {
            return read.error();
        }
    }
    finish_upstreams(side);
    route.canary_percent = static_cast<unsigned>(percent->get<std::int64_t>());
    route.canary = std::make_shared<const Route>(std::move(side));
    return {};
}

common::Result<Route> parse_route(const json& item, std::size_t index, std::string_view source) {
    const std::string where = "routes[" + std::to_string(index) + "]";
    if (!item.is_object()) {
        return malformed(source, where + " must be an object");
    }
    Route route;
    for (auto [key, out] : {std::pair{"host", &route.host}, std::pair{"app", &route.app},
                            std::pair{"release", &route.release}}) {
        const std::string* value = string_field(item, key);
        if (value == nullptr || value->empty()) {
            return malformed(source, where + "." + key + " must be a non-empty string");
        }
        *out = *value;
    }
    // "*.example.com" routes every name one label below example.com that no
    // route names exactly (what a wildcard certificate covers).
    const bool wildcard = route.host.rfind("*.", 0) == 0;
    const std::string_view named = std::string_view(route.host).substr(wildcard ? 2 : 0);
    std::string host = normalize_host(named);
    if (host.empty() || host.size() != named.size() - (named.back() == '.') ||
        (wildcard && host.find(':') != std::string::npos)) {
        return malformed(source, where + ".host \"" + route.host + "\" is not a host name");
    }
    route.host = wildcard ? "*." + host : std::move(host);
    if (auto maintenance = item.find("maintenance"); maintenance != item.end()) {
        TRY(parse_maintenance(*maintenance, where + ".maintenance", source, route));
    }
    if (auto pause = item.find("pause"); pause != item.end()) {
        TRY(parse_pause(*pause, where + ".pause", source, route));
    }
    auto upstream = item.find("upstream");
    auto upstreams = item.find("upstreams");
    auto site = item.find("static");
    auto stopped = item.find("stopped");
    if (auto sleeping = item.find("sleeping"); sleeping != item.end()) {
        if (upstream != item.end() || upstreams != item.end() || site != item.end() ||
            stopped != item.end()) {
            return malformed(source, where + ".sleeping is for an app route without "
                                             "\"upstream\", \"upstreams\", \"static\" and "
                                             "\"stopped\"");
        }
        TRY(parse_sleeping(*sleeping, where + ".sleeping", source, route));
        return route;
    }
    if (stopped != item.end()) {
        const bool scaled = stopped->is_string() && stopped->get<std::string>() == "scaled";
        if (!(scaled || (stopped->is_boolean() && stopped->get<bool>())) ||
            upstream != item.end() || upstreams != item.end() || site != item.end()) {
            return malformed(source, where + ".stopped must be true or \"scaled\", without "
                                             "\"upstream\", \"upstreams\" and \"static\"");
        }
        route.stopped = true;
        route.scaled_to_zero = scaled;
        return route;
    }
    if ((upstream != item.end()) + (upstreams != item.end()) + (site != item.end()) != 1) {
        return malformed(source, where + " must have exactly one of \"upstream\" (an app), "
                                         "\"upstreams\" (an app on several addresses), "
                                         "\"static\" (a static site), \"stopped\" and "
                                         "\"sleeping\"");
    }
    auto parsed = site != item.end() ? parse_static(*site, where + ".static", source, route)
                  : upstream != item.end()
                      ? parse_upstream(*upstream, where + ".upstream", source, route)
                      : parse_upstreams(*upstreams, where + ".upstreams", source, route);
    if (!parsed) {
        return parsed.error();
    }
    if (auto instances = item.find("instances"); instances != item.end()) {
        if (auto read = parse_instances(*instances, where + ".instances", source, route); !read) {
            return read.error();
        }
    }
    if (auto limits = item.find("limits"); limits != item.end()) {
        if (site != item.end()) {
            return malformed(source, where + ".limits is for an app route, not \"static\"");
        }
        if (auto read = parse_limits(*limits, where + ".limits", source, route); !read) {
            return read.error();
        }
    }
    finish_upstreams(route);
    if (auto canary = item.find("canary"); canary != item.end()) {
        if (route.upstreams.empty()) {
            return malformed(source, where + ".canary is for an app route");
        }
        auto read = parse_canary(*canary, where + ".canary", source, route);
        if (!read) {
            return read.error();
        }
    }
    return route;
}

} // namespace

RouteTable::RouteTable(std::uint64_t generation, std::vector<Route> routes)
    : m_generation(generation), m_routes(std::move(routes)) {
    m_index.reserve(m_routes.size());
    for (std::size_t i = 0; i < m_routes.size(); ++i) {
        m_index.emplace(m_routes[i].host, i);
        m_wildcards = m_wildcards || m_routes[i].host.rfind("*.", 0) == 0;
    }
}

namespace {
std::int64_t ticks(Route::Clock::time_point t) {
    return t.time_since_epoch().count();
}
} // namespace

bool Route::failing(std::size_t index, Clock::time_point now) const {
    return balance && index < balance->down_until.size() &&
           balance->down_until[index].load(std::memory_order_relaxed) > ticks(now);
}

void Route::mark_failed(std::size_t index, Clock::time_point now) const {
    if (balance && index < balance->down_until.size()) {
        balance->down_until[index].store(ticks(now + k_fail_timeout), std::memory_order_relaxed);
    }
}

std::size_t Route::pick(Clock::time_point now) const {
    const std::size_t n = upstreams.size();
    if (n <= 1 || !balance) {
        return 0;
    }
    // A failing upstream's turn is skipped by taking the next turn of the
    // counter (not by giving it to its neighbour, which would then get twice
    // the share of the others).
    const std::size_t start = balance->next.fetch_add(1, std::memory_order_relaxed) % n;
    if (!failing(start, now)) {
        return start;
    }
    bool any_healthy = false;
    for (std::size_t i = 0; i < n && !any_healthy; ++i) {
        any_healthy = !failing(i, now);
    }
    if (!any_healthy) {
        return start; // all failing: plain round robin
    }
    for (std::size_t i = 1; i < n; ++i) {
        const std::size_t index = balance->next.fetch_add(1, std::memory_order_relaxed) % n;
        if (!failing(index, now)) {
            return index;
        }
    }
    return start; // the healthy ones were taken by other threads' turns meanwhile
}

std::optional<std::size_t> Route::next_untried(std::size_t current, std::uint64_t tried,
                                               Clock::time_point now) const {
    const std::size_t n = upstreams.size();
    std::optional<std::size_t> failing_one;
    for (std::size_t i = 1; i < n; ++i) {
        const std::size_t index = (current + i) % n;
        if ((tried >> index) & 1u) {
            continue;
        }
        if (!failing(index, now)) {
            return index;
        }
        if (!failing_one) {
            failing_one = index;
        }
    }
    return failing_one;
}

std::optional<bool> canary_cookie_side(std::string_view cookies, std::string_view release) {
    // "a=1; deploy_canary=v5:c; b=2"
    while (!cookies.empty()) {
        const auto end = cookies.find(';');
        std::string_view pair = cookies.substr(0, end);
        cookies = end == std::string_view::npos ? std::string_view() : cookies.substr(end + 1);
        while (!pair.empty() && pair.front() == ' ') {
            pair.remove_prefix(1);
        }
        while (!pair.empty() && pair.back() == ' ') {
            pair.remove_suffix(1);
        }
        if (pair.size() != k_canary_cookie.size() + 1 + release.size() + 2 ||
            !pair.starts_with(k_canary_cookie) || pair[k_canary_cookie.size()] != '=') {
            continue;
        }
        const auto value = pair.substr(k_canary_cookie.size() + 1);
        if (!value.starts_with(release) || value[release.size()] != ':') {
            continue;
        }
        const char side = value.back();
        if (side == 'c' || side == 'p') {
            return side == 'c';
        }
    }
    return std::nullopt;
}

bool canary_hash_side(std::string_view client, unsigned percent) {
    // FNV-1a, then a multiplicative mix: neighbouring ids and addresses spread.
    std::uint64_t hash = 1469598103934665603ull;
    for (unsigned char c : client) {
        hash = (hash ^ c) * 1099511628211ull;
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    return hash % 100 < percent;
}

const Route* RouteTable::find(std::string_view host) const {
    if (auto it = m_index.find(host); it != m_index.end()) {
        return &m_routes[it->second];
    }
    if (!m_wildcards) {
        return nullptr;
    }
    const auto dot = host.find('.');
    if (dot == std::string_view::npos || dot == 0) {
        return nullptr;
    }
    std::string wildcard = "*";
    wildcard += host.substr(dot);
    auto it = m_index.find(wildcard);
    return it == m_index.end() ? nullptr : &m_routes[it->second];
}

void normalize_host(std::string_view host, std::string& out) {
    out.clear();
    host = strip_port(host);
    if (!host.empty() && host.back() == '.') {
        host.remove_suffix(1);
    }
    if (host.empty() || host.size() > 253) {
        return;
    }
    for (char c : host) {
        c = to_lower(c);
        if (!is_host_char(c) && c != ':') { // ':' only survives from an IPv6 literal
            out.clear();
            return;
        }
        out.push_back(c);
    }
}

std::string normalize_host(std::string_view host) {
    std::string out;
    normalize_host(host, out);
    return out;
}

common::Result<RouteTable> parse_routes(std::string_view text, std::string_view source) {
    json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
        return malformed(source, "not valid JSON");
    }
    if (!doc.is_object()) {
        return malformed(source, "expected a JSON object");
    }
    auto generation = doc.find("generation");
    if (generation == doc.end() || !generation->is_number_unsigned()) {
        return malformed(source, "\"generation\" must be a non-negative integer");
    }
    auto list = doc.find("routes");
    if (list == doc.end() || !list->is_array()) {
        return malformed(source, "\"routes\" must be an array");
    }
    std::vector<Route> routes;
    std::unordered_set<std::string> hosts;
    routes.reserve(list->size());
    for (std::size_t i = 0; i < list->size(); ++i) {
        auto route = parse_route((*list)[i], i, source);
        if (!route) {
            return route.error();
        }
        if (!hosts.insert(route->host).second) {
            return malformed(source, "host \"" + route->host + "\" appears twice");
        }
        routes.push_back(std::move(*route));
    }
    return RouteTable(generation->get<std::uint64_t>(), std::move(routes));
}

} // namespace agent::proxy
