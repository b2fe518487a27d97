#include <common/config.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/manifest.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <numeric>

namespace common {

namespace {

// Turns toml++ nodes into AppConfig, failing with "SOURCE:LINE:COL: message".
class Reader {
  public:
    Reader(std::string_view text, std::string_view source) : m_text(text), m_source(source) {}

    Error error_at(const toml::source_region& where, const std::string& message) const {
        const auto line = where.begin.line, column = where.begin.column;
        std::string out = fmt::format("{}:{}:{}: {}", m_source, line, column, message);
        if (auto text_line = source_line(line); !text_line.empty() && line > 0) {
            const auto gutter = std::to_string(line);
            out += fmt::format("\n  {} | {}\n  {} | {}^", gutter, text_line,
                               std::string(gutter.size(), ' '),
                               std::string(column > 0 ? column - 1 : 0, ' '));
        }
        return make_error(ErrorKind::config, std::move(out));
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

    static std::string join(const std::vector<std::string>& items) {
        std::string out;
        for (const auto& item : items)
            out += (out.empty() ? "" : ", ") + item;
        return out;
    }

    std::string_view m_text;
    std::string_view m_source;
};

#define TRY_ASSIGN(target, expr)                                                                   \
    do {                                                                                           \
        auto result_ = (expr);                                                                     \
        if (!result_)                                                                              \
            return result_.error();                                                                \
        target = std::move(*result_);                                                              \
    } while (0)

Status read_health(const Reader& r, const toml::table& t, HealthConfig& out) {
    if (auto ok = r.check_keys(t, "run.health", {"path", "interval", "timeout"}); !ok)
        return ok;
    if (const auto* n = t.get("path")) {
        TRY_ASSIGN(out.path, r.string_at(*n, "run.health.path"));
        if (out.path.empty() || out.path.front() != '/')
            return r.error_at(n->source(), "run.health.path must start with '/'");
    }
    if (const auto* n = t.get("interval"))
        TRY_ASSIGN(out.interval, r.duration_at(*n, "run.health.interval"));
    if (const auto* n = t.get("timeout"))
        TRY_ASSIGN(out.timeout, r.duration_at(*n, "run.health.timeout"));
    return {};
}

Status read_build(const Reader& r, const toml::table& t, BuildConfig& out) {
    if (auto ok = r.check_keys(t, "[build]",
                               {"command", "dockerfile", "timeout", "memory", "args", "secrets"});
        !ok)
        return ok;
    if (const auto* n = t.get("command"))
        TRY_ASSIGN(out.command, r.string_at(*n, "build.command"));
    if (const auto* n = t.get("dockerfile"))
        TRY_ASSIGN(out.dockerfile, r.string_at(*n, "build.dockerfile"));
    if (const auto* n = t.get("timeout"))
        TRY_ASSIGN(out.timeout, r.duration_at(*n, "build.timeout"));
    if (const auto* n = t.get("memory"))
        TRY_ASSIGN(out.memory, r.size_at(*n, "build.memory"));
    if (const auto* n = t.get("secrets"))
        TRY_ASSIGN(out.secrets, r.strings_at(*n, "build.secrets"));
    if (const auto* n = t.get("args")) {
        const toml::table* args = nullptr;
        TRY_ASSIGN(args, r.table_at(*n, "build.args"));
        for (auto&& [k, v] : *args)
            TRY_ASSIGN(out.args[std::string(k.str())], r.string_at(v, "every build.args value"));
    }
    return {};
}

Status read_run(const Reader& r, const toml::table& t, RunConfig& out) {
    if (auto ok = r.check_keys(t, "[run]", {"command", "port", "memory", "health"}); !ok)
        return ok;
    if (const auto* n = t.get("command"))
        TRY_ASSIGN(out.command, r.string_at(*n, "run.command"));
    if (const auto* n = t.get("port")) {
        std::int64_t port = 0;
        TRY_ASSIGN(port, r.integer_at(*n, "run.port", 1, 65535));
        out.port = static_cast<int>(port);
    }
    if (const auto* n = t.get("memory"))
        TRY_ASSIGN(out.memory, r.size_at(*n, "run.memory"));
    if (const auto* n = t.get("health")) {
        const toml::table* health = nullptr;
        TRY_ASSIGN(health, r.table_at(*n, "run.health"));
        if (auto ok = read_health(r, *health, out.health); !ok)
            return ok;
    }
    return {};
}

Status read_static(const Reader& r, const toml::table& t, StaticConfig& out) {
    if (auto ok = r.check_keys(t, "[static]", {"dir", "spa"}); !ok)
        return ok;
    if (const auto* n = t.get("dir"))
        TRY_ASSIGN(out.dir, r.string_at(*n, "static.dir"));
    if (const auto* n = t.get("spa"))
        TRY_ASSIGN(out.spa, r.boolean_at(*n, "static.spa"));
    if (out.dir.empty())
        out.dir = ".";
    else if (!is_safe_relative_path(out.dir) && out.dir != ".")
        return r.error_at(t.get("dir")->source(),
                          "static.dir must be a relative path inside the app");
    return {};
}

Status read_deploy(const Reader& r, const toml::table& t, DeploySettings& out) {
    if (auto ok = r.check_keys(t, "[deploy]", {"keep", "drain", "idle_stop"}); !ok)
        return ok;
    if (const auto* n = t.get("keep")) {
        std::int64_t keep = 0;
        TRY_ASSIGN(keep, r.integer_at(*n, "deploy.keep", 1, 1000));
        out.keep = static_cast<int>(keep);
    }
    if (const auto* n = t.get("drain"))
        TRY_ASSIGN(out.drain, r.duration_at(*n, "deploy.drain"));
    if (const auto* n = t.get("idle_stop"))
        TRY_ASSIGN(out.idle_stop, r.duration_at(*n, "deploy.idle_stop"));
    return {};
}

Status read_env(const Reader& r, const toml::table& t, std::map<std::string, std::string>& out) {
    for (auto&& [k, v] : t) {
        const std::string name(k.str());
        if (v.is_string())
            out[name] = *v.value<std::string>();
        else if (v.is_integer())
            out[name] = std::to_string(*v.value<std::int64_t>());
        else if (v.is_floating_point())
            out[name] = fmt::format("{}", *v.value<double>());
        else if (v.is_boolean())
            out[name] = *v.value<bool>() ? "true" : "false";
        else
            return r.error_at(v.source(),
                              fmt::format("env.{} must be a string, number or boolean", name));
    }
    return {};
}

Status read_targets(const Reader& r, const toml::table& t,
                    std::map<std::string, TargetConfig>& out) {
    for (auto&& [k, v] : t) {
        TargetConfig target;
        target.name = std::string(k.str());
        const toml::table* table = nullptr;
        TRY_ASSIGN(table, r.table_at(v, "targets." + target.name));
        if (auto ok = r.check_keys(*table, "[targets." + target.name + "]", {"hosts", "domains"});
            !ok)
            return ok;
        if (const auto* n = table->get("hosts"))
            TRY_ASSIGN(target.hosts, r.strings_at(*n, "hosts"));
        if (const auto* n = table->get("domains"))
            TRY_ASSIGN(target.domains, r.strings_at(*n, "domains"));
        out[target.name] = std::move(target);
    }
    return {};
}

template <class T, class Fn>
Status read_section(const Reader& r, const toml::table& root, const char* key, T& out, Fn fn) {
    const auto* node = root.get(key);
    if (!node)
        return {};
    const toml::table* table = nullptr;
    TRY_ASSIGN(table, r.table_at(*node, fmt::format("[{}]", key)));
    return fn(r, *table, out);
}

Result<AppConfig> read_config(const Reader& r, const toml::table& root) {
    if (auto ok = r.check_keys(root, "the top level",
                               {"app", "build", "run", "static", "deploy", "env", "targets"});
        !ok)
        return ok.error();
    AppConfig config;
    const auto* app = root.get("app");
    if (!app)
        return r.error_at(root.source(), "missing required key 'app' (the application's name)");
    TRY_ASSIGN(config.app, r.string_at(*app, "app"));
    if (!is_valid_app_name(config.app))
        return r.error_at(app->source(), "app must be 1-63 lower-case letters, digits or '-', "
                                         "starting with a letter");
    if (auto ok = read_section(r, root, "build", config.build, read_build); !ok)
        return ok.error();
    if (auto ok = read_section(r, root, "run", config.run, read_run); !ok)
        return ok.error();
    if (root.get("static")) {
        config.static_site.emplace();
        if (auto ok = read_section(r, root, "static", *config.static_site, read_static); !ok)
            return ok.error();
    }
    if (auto ok = read_section(r, root, "deploy", config.deploy, read_deploy); !ok)
        return ok.error();
    if (auto ok = read_section(r, root, "env", config.env, read_env); !ok)
        return ok.error();
    if (auto ok = read_section(r, root, "targets", config.targets, read_targets); !ok)
        return ok.error();
    return config;
}

#undef TRY_ASSIGN

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    std::iota(row.begin(), row.end(), 0);
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] =
                std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

} // namespace

Result<AppConfig> parse_config(std::string_view text, std::string_view source_name) {
    Reader reader(text, source_name);
    try {
        const toml::table root = toml::parse(text, source_name);
        return read_config(reader, root);
    } catch (const toml::parse_error& e) {
        return reader.error_at(e.source(), std::string(e.description()));
    }
}

Result<AppConfig> load_config(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        return make_error(ErrorKind::config,
                          fmt::format("{}: no such file (run `deployctl init` to create one, or "
                                      "pass the app's directory)",
                                      path.string()));
    auto text = read_file(path);
    if (!text)
        return make_error(ErrorKind::config, text.error().message);
    return parse_config(*text, path.filename().string());
}

bool is_valid_app_name(std::string_view name) {
    if (name.empty() || name.size() > 63 || !(name[0] >= 'a' && name[0] <= 'z'))
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
}

std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates) {
    std::optional<std::string> best;
    std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
    for (const auto& candidate : candidates) {
        const auto d = edit_distance(word, candidate);
        if (d < best_distance) {
            best_distance = d;
            best = candidate;
        }
    }
    return best;
}

} // namespace common
