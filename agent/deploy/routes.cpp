#include <agent/deploy/routes.hpp>
#include <common/fs.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <thread>

namespace agent {

std::vector<std::string> route_hosts(const std::string& app, const common::AppConfig& config) {
    std::vector<std::string> hosts{app + ".localhost"};
    for (const auto& [name, target] : config.targets)
        for (const auto& domain : target.domains)
            if (std::find(hosts.begin(), hosts.end(), domain) == hosts.end())
                hosts.push_back(domain);
    return hosts;
}

std::string routing_table_json(std::uint64_t generation, const std::vector<Route>& routes) {
    nlohmann::json table{{"generation", generation}, {"routes", nlohmann::json::array()}};
    for (const auto& route : routes) {
        nlohmann::json item{{"host", route.host}, {"app", route.app}, {"release", route.release}};
        if (route.maintenance) {
            nlohmann::json maintenance{{"message", route.maintenance_message},
                                       {"retry_after", route.retry_after}};
            if (!route.maintenance_page.empty())
                maintenance["page"] = route.maintenance_page;
            item["maintenance"] = std::move(maintenance);
        }
        if (route.pause_timeout_ms > 0)
            item["pause"] = {{"timeout_ms", route.pause_timeout_ms}};
        if (route.scaled_to_zero)
            item["stopped"] = "scaled";
        else if (route.stopped)
            item["stopped"] = true;
        else if (route.wake_timeout_ms > 0) {
            item["sleeping"] = {{"timeout_ms", route.wake_timeout_ms}};
            if (!route.wake_error.empty())
                item["sleeping"]["error"] = route.wake_error;
        } else if (!route.static_root.empty())
            item["static"] = {{"root", route.static_root}, {"spa", route.spa}};
        else {
            if (route.upstreams.size() > 1)
                item["upstreams"] = route.upstreams;
            else
                item["upstream"] = route.upstream;
            if (route.instances.size() == std::max<std::size_t>(route.upstreams.size(), 1))
                item["instances"] = route.instances;
            item["limits"] = {{"max_body", route.limits.max_body},
                              {"connect_timeout_ms", route.limits.connect_timeout.count()},
                              {"read_timeout_ms", route.limits.read_timeout.count()},
                              {"websocket_idle_ms", route.limits.websocket_idle.count()}};
            if (!route.canary_release.empty() && !route.canary_upstreams.empty()) {
                nlohmann::json canary{{"release", route.canary_release},
                                      {"percent", route.canary_percent},
                                      {"upstreams", route.canary_upstreams}};
                if (route.canary_instances.size() == route.canary_upstreams.size())
                    canary["instances"] = route.canary_instances;
                item["canary"] = std::move(canary);
            }
        }
        table["routes"].push_back(std::move(item));
    }
    return table.dump(2) + "\n";
}

namespace {

std::uint64_t parse_generation(const std::string& text) {
    auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_object() && json.contains("generation"))
        json = json["generation"];
    if (json.is_number_unsigned())
        return json.get<std::uint64_t>();
    if (json.is_number_integer() && json.get<std::int64_t>() > 0)
        return static_cast<std::uint64_t>(json.get<std::int64_t>());
    return 0;
}

} // namespace

std::uint64_t read_generation(const std::filesystem::path& file) {
    auto text = common::read_file(file);
    return text ? parse_generation(*text) : 0;
}

common::Result<std::uint64_t> generation_in(const std::filesystem::path& file) {
    std::error_code ec;
    const auto status = std::filesystem::status(file, ec);
    if (status.type() == std::filesystem::file_type::not_found)
        return std::uint64_t{0};
    if (status.type() == std::filesystem::file_type::directory)
        return common::make_error(common::ErrorKind::io, "cannot read " + file.string() + ": " +
                                                             common::os_error_text(EISDIR));
    TRY_ASSIGN(auto text, common::read_file(file));
    return parse_generation(text);
}

RoutePublisher::RoutePublisher(std::filesystem::path routes, std::filesystem::path applied,
                               Steps steps, PublishLimits limits)
    : m_routes(std::move(routes)), m_applied(std::move(applied)), m_steps(std::move(steps)),
      m_limits(limits) {}

common::Status RoutePublisher::load_generation() {
    if (m_loaded)
        return {};
    // Above both the last table written and the last one the proxy applied, so
    // that an acknowledgement can only be for a table this publisher wrote.
    std::string failure;
    for (int attempt = 0; attempt < m_limits.write_attempts; ++attempt) {
        if (attempt > 0)
            std::this_thread::sleep_for(m_limits.write_retry);
        auto routes = generation_in(m_routes);
        auto applied = routes ? generation_in(m_applied) : routes;
        if (routes && applied) {
            m_generation = std::max({m_generation, *routes, *applied});
            m_loaded = true;
            return {};
        }
        failure = applied.error().message;
    }
    return common::make_error(common::ErrorKind::io,
                              "cannot read the current routing generation: " + failure);
}

common::Status RoutePublisher::wait_acknowledged(std::uint64_t generation) const {
    if (!m_steps.acknowledges || !m_steps.acknowledges())
        return {};
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + m_limits.ack_timeout;
    auto next_signal = start;
    for (;;) {
        auto now = std::chrono::steady_clock::now();
        if (now >= next_signal) {
            // Again while waiting: a proxy that could not read the table or
            // write its answer tries again on the signal.
            if (m_steps.signal)
                m_steps.signal();
            next_signal = now + m_limits.resignal;
        }
        const auto applied = read_generation(m_applied);
        if (applied >= generation)
            return {};
        if (now >= deadline)
            return common::make_error(
                common::ErrorKind::timeout,
                "deploy-proxy did not acknowledge routing generation " +
                    std::to_string(generation) + " within " +
                    std::to_string(m_limits.ack_timeout.count()) + "ms (" + m_applied.string() +
                    (applied ? " says " + std::to_string(applied) : " is missing or unreadable") +
                    (m_steps.proxy_log.empty() ? ")" : "; see " + m_steps.proxy_log + ")"));
        std::this_thread::sleep_for(m_limits.poll);
    }
}

common::Status RoutePublisher::publish(const std::vector<Route>& routes) {
    TRY(load_generation());
    common::Status written;
    int attempt = 0;
    do {
        if (attempt > 0)
            std::this_thread::sleep_for(m_limits.write_retry);
        ++attempt;
        const auto generation = ++m_generation;
        written = m_steps.write(m_routes, routing_table_json(generation, routes));
    } while (!written && attempt < m_limits.write_attempts);
    if (!written)
        return common::make_error(common::ErrorKind::io,
                                  "cannot write the routing table (" + std::to_string(attempt) +
                                      (attempt == 1 ? " attempt): " : " attempts): ") +
                                      written.error().message);
    return wait_acknowledged(m_generation);
}

} // namespace agent
