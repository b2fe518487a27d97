#pragma once
// Reading a TOML file into config structs with errors users can act on:
// "SOURCE:LINE:COL: message", the line itself with a caret under the column,
// and for an unknown key the closest valid one. Includes toml++: include it
// from the .cpp files that parse (deploy.toml, agent.toml), never a header.

#include <common/config.hpp>
#include <common/duration.hpp>
#include <common/result.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace common {

// Turns toml++ nodes into values, failing with "SOURCE:LINE:COL: message".
class Reader {
  public:
    Reader(std::string_view text, std::string_view source) : m_text(text), m_source(source) {}

    Error error_at(const toml::source_region& where, const std::string& message) const {
        const auto line = where.begin.line, column = where.begin.column;
        std::string out = fmt::format("{}:{}:{}: {}", m_source, line, column, message);
        if (auto text_line = source_line(line); !text_line.empty() && line > 0) {
            const auto gutter = std::to_string(line);
            out += fmt::format("\n  {} | {}\n  {} | {}^", gutter, text_line,
                               std::string(gutter.size(), ' '), caret_indent(text_line, column));
        }
        return make_error(ErrorKind::config, std::move(out));
    }

    // An error about the whole file (a missing key): no line to point at.
    Error error_in_file(const std::string& message) const {
        return make_error(ErrorKind::config, fmt::format("{}: {}", m_source, message));
    }

    Status check_keys(const toml::table& table, std::string_view where,
                      const std::vector<std::string>& allowed) const {
        for (auto&& [key, node] : table) {
            const std::string name(key.str());
            if (std::find(allowed.begin(), allowed.end(), name) != allowed.end())
                continue;
            std::string message = fmt::format("unknown key '{}' in {}", name, where);
            if (auto guess = closest_match(name, allowed))
                message += fmt::format("; did you mean '{}'?", *guess);
            message += fmt::format(" (expected one of: {})", join(allowed));
            return error_at(key.source(), message);
        }
        return {};
    }

    Result<std::string> string_at(const toml::node& node, std::string_view name) const {
        if (auto s = node.value<std::string>(); s && node.is_string())
            return *s;
        return error_at(node.source(), fmt::format("{} must be a string", name));
    }

    Result<std::int64_t> integer_at(const toml::node& node, std::string_view name, std::int64_t min,
                                    std::int64_t max) const {
        auto v = node.as_integer();
        if (!v || v->get() < min || v->get() > max)
            return error_at(node.source(),
                            fmt::format("{} must be an integer from {} to {}", name, min, max));
        return v->get();
    }

    Result<bool> boolean_at(const toml::node& node, std::string_view name) const {
        if (auto b = node.as_boolean())
            return b->get();
        return error_at(node.source(), fmt::format("{} must be true or false", name));
    }

    Result<std::chrono::milliseconds> duration_at(const toml::node& node,
                                                  std::string_view name) const {
        auto text = string_at(node, name);
        if (!text)
            return text.error();
        auto d = parse_duration(*text);
        if (!d)
            return error_at(node.source(), fmt::format("{}: {}", name, d.error().message));
        return *d;
    }

    Result<std::uint64_t> size_at(const toml::node& node, std::string_view name) const {
        auto text = string_at(node, name);
        if (!text)
            return text.error();
        auto s = parse_size(*text);
        if (!s)
            return error_at(node.source(), fmt::format("{}: {}", name, s.error().message));
        return *s;
    }

    Result<std::vector<std::string>> strings_at(const toml::node& node,
                                                std::string_view name) const {
        const auto* array = node.as_array();
        if (!array)
            return error_at(node.source(), fmt::format("{} must be an array of strings", name));
        std::vector<std::string> out;
        for (const auto& item : *array) {
            auto s = string_at(item, fmt::format("every item of {}", name));
            if (!s)
                return s.error();
            out.push_back(*s);
        }
        return out;
    }

    Result<const toml::table*> table_at(const toml::node& node, std::string_view name) const {
        if (const auto* t = node.as_table())
            return t;
        return error_at(node.source(), fmt::format("{} must be a table", name));
    }

  private:
    std::string_view source_line(std::size_t line) const {
        std::size_t start = 0;
        for (std::size_t i = 1; i < line; ++i) {
            start = m_text.find('\n', start);
            if (start == std::string_view::npos)
                return {};
            ++start;
        }
        auto end = m_text.find('\n', start);
        auto text = m_text.substr(start, end == std::string_view::npos ? end : end - start);
        if (!text.empty() && text.back() == '\r')
            text.remove_suffix(1);
        return text;
    }

    // What goes before the caret so that it sits under `column` (1-based, in
    // characters as toml++ counts them): tabs stay tabs, any other character
    // (a UTF-8 sequence included) is one space.
    static std::string caret_indent(std::string_view text_line, std::size_t column) {
        std::string indent;
        std::size_t characters = 0;
        for (std::size_t i = 0; i < text_line.size() && characters + 1 < column; ++characters) {
            const auto lead = static_cast<unsigned char>(text_line[i]);
            indent += lead == '\t' ? '\t' : ' ';
            i += lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        }
        if (characters + 1 < column) // past the end of the line (an error at its end)
            indent.append(column - 1 - characters, ' ');
        return indent;
    }

    static std::string join(const std::vector<std::string>& items) {
        std::string out;
        for (const auto& item : items)
            out += (out.empty() ? "" : ", ") + item;
        return out;
    }

    std::string_view m_text;
    std::string_view m_source;
};

} // namespace common
