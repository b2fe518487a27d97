#include <agent/proxy/stats.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <unistd.h>

namespace agent::proxy {

namespace {

std::size_t method_index(std::string_view method) {
    for (std::size_t i = 0; i + 1 < k_stat_methods.size(); ++i)
        if (k_stat_methods[i] == method)
            return i;
    return k_stat_methods.size() - 1;
}

// One request that ended: its method and status class, its duration.
void count_request(AppStats& stats, std::string_view method, int status, double seconds) {
    if (status >= 100 && status < 600)
        ++stats.requests[method_index(method)][static_cast<std::size_t>(status / 100 - 1)];
    for (std::size_t b = 0; b < k_stat_buckets.size(); ++b)
        if (seconds <= k_stat_buckets[b])
            ++stats.buckets[b];
    ++stats.count;
    stats.seconds += seconds;
}

std::uint64_t number(const nlohmann::json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

std::int64_t signed_number(const nlohmann::json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

} // namespace

void AppStats::add(const AppStats& other) {
    for (std::size_t m = 0; m < requests.size(); ++m)
        for (std::size_t c = 0; c < requests[m].size(); ++c)
            requests[m][c] += other.requests[m][c];
    for (std::size_t b = 0; b < buckets.size(); ++b)
        buckets[b] += other.buckets[b];
    count += other.count;
    seconds += other.seconds;
    bytes_in += other.bytes_in;
    bytes_out += other.bytes_out;
    connect_errors += other.connect_errors;
    retries += other.retries;
    in_flight += other.in_flight;
    websockets += other.websockets;
}

void Stats::request_started(const std::string& app) {
    std::lock_guard lock(m_mutex);
    ++m_apps[app].in_flight;
}

void Stats::request_ended(const std::string& app, std::string_view method, int status,
                          double seconds, std::uint64_t bytes_in, std::uint64_t bytes_out) {
    std::lock_guard lock(m_mutex);
    auto& stats = m_apps[app];
    --stats.in_flight;
    ++m_requests;
    count_request(stats, method, status, seconds);
    stats.bytes_in += bytes_in;
    stats.bytes_out += bytes_out;
}

void Stats::release_ended(const std::string& key, std::string_view method, int status,
                          double seconds) {
    std::lock_guard lock(m_mutex);
    count_request(m_releases[key], method, status, seconds);
}

double stat_quantile(const AppStats& stats, double q) {
    if (stats.count == 0)
        return 0;
    const double rank = q * static_cast<double>(stats.count);
    double lower = 0;
    std::uint64_t below = 0;
    for (std::size_t b = 0; b < k_stat_buckets.size(); ++b) {
        const std::uint64_t upto = stats.buckets[b];
        if (static_cast<double>(upto) >= rank && upto > below)
            return lower + (k_stat_buckets[b] - lower) * (rank - static_cast<double>(below)) /
                               static_cast<double>(upto - below);
        lower = k_stat_buckets[b];
        below = upto;
    }
    return k_stat_buckets.back();
}

std::uint64_t stat_5xx(const AppStats& stats) {
    std::uint64_t n = 0;
    for (const auto& by_class : stats.requests)
        n += by_class[4];
    return n;
}

void Stats::add_releases_to(std::map<std::string, AppStats>& into) const {
    std::lock_guard lock(m_mutex);
    for (const auto& [key, stats] : m_releases)
        into[key].add(stats);
}

void Stats::connect_error(const std::string& app) {
    std::lock_guard lock(m_mutex);
    ++m_apps[app].connect_errors;
}

void Stats::retry(const std::string& app) {
    std::lock_guard lock(m_mutex);
    ++m_apps[app].retries;
}

void Stats::websocket(const std::string& app, int change) {
    std::lock_guard lock(m_mutex);
    m_apps[app].websockets += change;
}

Stats::Worker Stats::worker() const {
    std::lock_guard lock(m_mutex);
    return {m_requests, m_connections};
}

void Stats::connection(int change) {
    std::lock_guard lock(m_mutex);
    m_connections += change;
}

void Stats::add_to(std::map<std::string, AppStats>& into, std::int64_t& connections) const {
    std::lock_guard lock(m_mutex);
    for (const auto& [app, stats] : m_apps)
        into[app].add(stats);
    connections += m_connections;
}

nlohmann::json stats_json(const std::string& instance, const std::map<std::string, AppStats>& apps,
                          std::int64_t connections) {
    nlohmann::json out{
        {"instance", instance}, {"connections", connections}, {"apps", nlohmann::json::object()}};
    for (const auto& [app, stats] : apps) {
        nlohmann::json requests = nlohmann::json::object();
        for (std::size_t m = 0; m < k_stat_methods.size(); ++m)
            for (std::size_t c = 0; c < 5; ++c)
                if (stats.requests[m][c] > 0)
                    requests[std::string(k_stat_methods[m]) + " " + std::to_string(c + 1) + "xx"] =
                        stats.requests[m][c];
        out["apps"][app] = {{"requests", requests},
                            {"buckets", stats.buckets},
                            {"count", stats.count},
                            {"seconds", stats.seconds},
                            {"bytes_in", stats.bytes_in},
                            {"bytes_out", stats.bytes_out},
                            {"connect_errors", stats.connect_errors},
                            {"retries", stats.retries},
                            {"in_flight", stats.in_flight},
                            {"websockets", stats.websockets}};
    }
    return out;
}

std::map<std::string, AppStats> apps_from_json(const nlohmann::json& apps) {
    std::map<std::string, AppStats> out;
    if (!apps.is_object())
        return out;
    for (const auto& [app, item] : apps.items()) {
        if (!item.is_object())
            continue;
        AppStats stats;
        if (auto requests = item.find("requests"); requests != item.end() && requests->is_object())
            for (const auto& [key, value] : requests->items()) {
                const auto space = key.find(' ');
                if (space == std::string::npos || key.size() != space + 4 || !value.is_number())
                    continue;
                const int klass = key[space + 1] - '0';
                if (klass < 1 || klass > 5)
                    continue;
                stats.requests[method_index(key.substr(0, space))]
                              [static_cast<std::size_t>(klass - 1)] = value.get<std::uint64_t>();
            }
        if (auto buckets = item.find("buckets"); buckets != item.end() && buckets->is_array() &&
                                                 buckets->size() == k_stat_buckets.size())
            for (std::size_t b = 0; b < k_stat_buckets.size(); ++b)
                stats.buckets[b] =
                    (*buckets)[b].is_number_unsigned() ? (*buckets)[b].get<std::uint64_t>() : 0;
        stats.count = number(item, "count");
        if (auto seconds = item.find("seconds"); seconds != item.end() && seconds->is_number())
            stats.seconds = seconds->get<double>();
        stats.bytes_in = number(item, "bytes_in");
        stats.bytes_out = number(item, "bytes_out");
        stats.connect_errors = number(item, "connect_errors");
        stats.retries = number(item, "retries");
        stats.in_flight = signed_number(item, "in_flight");
        stats.websockets = signed_number(item, "websockets");
        out[app] = stats;
    }
    return out;
}

bool write_snapshot(const std::filesystem::path& path, const std::string& text) {
    const auto temp = path.string() + ".tmp-" + std::to_string(::getpid());
    {
        std::ofstream out(temp, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out.flush())
            return std::remove(temp.c_str()), false;
    }
    if (std::rename(temp.c_str(), path.c_str()) != 0)
        return std::remove(temp.c_str()), false;
    return true;
}

} // namespace agent::proxy
