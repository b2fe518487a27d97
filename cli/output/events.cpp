#include <cli/output/events.hpp>

#include <nlohmann/json.hpp>

namespace cli::output {

JsonValue::JsonValue(const nlohmann::json& value)
    : m_value(std::make_shared<const nlohmann::json>(value)) {}

JsonValue::JsonValue(nlohmann::json&& value)
    : m_value(std::make_shared<const nlohmann::json>(std::move(value))) {}

} // namespace cli::output
