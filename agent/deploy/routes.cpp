#include <agent/deploy/routes.hpp>
#include <common/fs.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>

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
        if (route.stopped)
            item["stopped"] = true;
        else if (route.static_root.empty())
            item["upstream"] = route.upstream;
        else
            item["static"] = {{"root", route.static_root}, {"spa", route.spa}};
        table["routes"].push_back(std::move(item));
    }
    return table.dump(2) + "\n";
}

std::uint64_t read_generation(const std::filesystem::path& file) {
    auto text = common::read_file(file);
    if (!text)
        return 0;
    auto json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (json.is_object() && json.contains("generation"))
        json = json["generation"];
    if (json.is_number_unsigned())
        return json.get<std::uint64_t>();
    if (json.is_number_integer() && json.get<std::int64_t>() > 0)
        return static_cast<std::uint64_t>(json.get<std::int64_t>());
    return 0;
}

} // namespace agent
