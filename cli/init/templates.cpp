// The embedded templates: listing them and filling their placeholders.

#include <cli/init/embedded.hpp>
#include <cli/init/templates.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace cli::init {

namespace {

constexpr std::string_view k_shared = "_shared";
constexpr int k_max_depth = 4; // shared pieces may include others, not forever

std::optional<std::string_view> file_text(std::string_view path) {
    for (const auto& file : embedded_files())
        if (file.path == path)
            return file.content;
    return std::nullopt;
}

std::string first_line(std::string_view text) {
    auto end = text.find('\n');
    return std::string(text.substr(0, end));
}

common::Result<std::string> render_at(std::string_view text, const Vars& vars, int depth) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        auto open = text.find("{{", pos);
        if (open == std::string_view::npos)
            break;
        auto close = text.find("}}", open + 2);
        if (close == std::string_view::npos)
            return common::make_error(common::ErrorKind::internal, "template: '{{' without '}}'");
        out.append(text.substr(pos, open - pos));
        auto key = text.substr(open + 2, close - open - 2);
        if (key.starts_with("shared:")) {
            auto piece = file_text(fmt::format("{}/{}", k_shared, key.substr(7)));
            if (!piece || depth >= k_max_depth)
                return common::make_error(common::ErrorKind::internal,
                                          fmt::format("template: no piece '{}'", key));
            auto filled = render_at(*piece, vars, depth + 1);
            if (!filled)
                return filled.error();
            out += *filled;
        } else if (auto it = vars.find(key); it != vars.end()) {
            out += it->second;
        } else {
            return common::make_error(common::ErrorKind::internal,
                                      fmt::format("template: no value for {{{{{}}}}}", key));
        }
        pos = close + 2;
    }
    out.append(text.substr(pos));
    return out;
}

} // namespace

std::vector<TemplateInfo> list_templates() {
    std::vector<TemplateInfo> list;
    for (const auto& file : embedded_files()) {
        auto slash = file.path.find('/');
        auto dir = file.path.substr(0, slash);
        if (slash == std::string_view::npos || dir == k_shared ||
            file.path.substr(slash + 1) != "description")
            continue;
        TemplateInfo info;
        info.name = std::string(dir);
        info.description = first_line(file.content);
        info.has_dockerfile = file_text(fmt::format("{}/Dockerfile", dir)).has_value();
        info.has_process = file_text(fmt::format("{}/process.toml", dir)).has_value();
        if (auto needs = file_text(fmt::format("{}/needs", dir)))
            info.needs = first_line(*needs);
        list.push_back(std::move(info));
    }
    std::sort(list.begin(), list.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    return list;
}

std::optional<TemplateInfo> find_template(std::string_view name) {
    for (auto& info : list_templates())
        if (info.name == name)
            return info;
    return std::nullopt;
}

common::Result<std::string> render(std::string_view text, const Vars& vars) {
    auto out = render_at(text, vars, 0);
    if (!out)
        return out;
    // Pieces end with a newline of their own: one at the end of the file is enough.
    while (out->size() >= 2 && out->ends_with("\n\n"))
        out->pop_back();
    return out;
}

common::Result<std::vector<RenderedFile>> render_template(const TemplateInfo& info,
                                                          const Vars& vars, Engine engine) {
    // The file written, and the template file it comes from.
    std::vector<std::pair<const char*, const char*>> sources{{"deploy.toml", "deploy.toml"}};
    if (engine == Engine::container)
        sources.emplace_back("Dockerfile", "Dockerfile");
    else if (info.has_process)
        sources.front().second = "process.toml";
    std::vector<RenderedFile> files;
    for (const auto& [name, source] : sources) {
        auto text = file_text(fmt::format("{}/{}", info.name, source));
        if (!text)
            continue;
        auto filled = render(*text, vars);
        if (!filled)
            return common::make_error(
                filled.error().kind,
                fmt::format("{}/{}: {}", info.name, source, filled.error().message));
        files.push_back({name, std::move(*filled)});
    }
    return files;
}

std::string toml_string(std::string_view text) {
    if (text.find_first_of("\"\\\n\r\t") == std::string_view::npos)
        return fmt::format("\"{}\"", text);
    if (text.find_first_of("'\n\r\t") == std::string_view::npos)
        return fmt::format("'{}'", text); // quotes for the shell, as written
    std::string out = "\"";
    for (char c : text) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            out += c;
        }
    }
    return out + "\"";
}

} // namespace cli::init
