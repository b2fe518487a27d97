// Python: requirements.txt lines or pyproject.toml's dependency tables pick
// Django, FastAPI or Flask; the entry point is read from the code.

#include <cli/init/stacks.hpp>
#include <common/ascii.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <regex>
#include <set>
#include <sstream>

namespace cli::init::stacks {

namespace {

struct Framework {
    const char* package;
    const char* template_name;
    const char* name;
    const char* server; // the package the Dockerfile adds to serve it
};

constexpr Framework k_frameworks[] = {
    {"django", "python-django", "Django", "gunicorn"},
    {"fastapi", "python-fastapi", "FastAPI", "uvicorn"},
    {"flask", "python-flask", "Flask", "gunicorn"},
};

// "Flask[async]>=2.0 ; python_version>'3'" -> "flask".
std::string requirement_name(std::string_view line) {
    auto end = line.find_first_of("<>=!~;[ @\t");
    std::string name(line.substr(0, end));
    for (auto& c : name)
        c = c == '_' ? '-' : common::ascii_lower(c);
    return name;
}

// Package name -> where it was found ("requirements.txt line 3").
using Packages = std::map<std::string, std::string>;

void read_requirements(const std::string& text, Packages& out) {
    std::istringstream in(text);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        line = line.substr(0, line.find('#'));
        auto start = line.find_first_not_of(" \t");
        if (start == std::string::npos || line[start] == '-')
            continue; // blank, or an option such as -r other.txt
        out.try_emplace(requirement_name(line.substr(start)),
                        fmt::format("requirements.txt line {}", number));
    }
}

// The dependencies into `out`, and [project] name into `name`.
common::Status read_pyproject(const std::string& text, Packages& out, std::string& name) {
    toml::table root;
    try {
        root = toml::parse(std::string_view(text), std::string_view("pyproject.toml"));
    } catch (const toml::parse_error& e) {
        return common::make_error(common::ErrorKind::config,
                                  fmt::format("pyproject.toml:{}:{}: {}", e.source().begin.line,
                                              e.source().begin.column, e.description()));
    }
    name = root["project"]["name"].value_or(std::string());
    if (auto* deps = root["project"]["dependencies"].as_array())
        for (const auto& dep : *deps)
            if (auto s = dep.value<std::string>())
                out.try_emplace(requirement_name(*s), "pyproject.toml [project] dependencies");
    if (auto* deps = root["tool"]["poetry"]["dependencies"].as_table())
        for (const auto& [key, value] : *deps)
            out.try_emplace(requirement_name(key.str()),
                            "pyproject.toml [tool.poetry.dependencies]");
    return {};
}

// "app/main.py" -> "app.main"; "app/__init__.py" -> "app".
std::string module_of(std::string path) {
    path = path.substr(0, path.size() - 3);
    if (path.ends_with("/__init__"))
        path.resize(path.size() - 9);
    std::replace(path.begin(), path.end(), '/', '.');
    return path;
}

// The module:attribute the server imports, found by `NAME = Flask(` / `FastAPI(`
// or an app factory `def create_app(`.
std::optional<std::string> find_entry(const fs::path& dir, const char* constructor, Detection& d) {
    const std::regex assign(fmt::format(R"((^|\n)(\w+)\s*=\s*{}\()", constructor));
    const std::regex factory(R"((^|\n)def (create_app)\()");
    for (const char* file : {"app.py", "main.py", "wsgi.py", "application.py", "server.py",
                             "app/__init__.py", "app/main.py", "src/main.py"}) {
        auto text = read_if_present(dir, file);
        if (!text || !*text)
            continue;
        std::smatch m;
        std::string call;
        if (std::regex_search(**text, m, assign))
            call = m[2];
        else if (std::regex_search(**text, m, factory))
            call = "create_app()";
        else
            continue;
        auto entry = fmt::format("{}:{}", module_of(file), call);
        d.evidence.push_back(fmt::format(
            "{}: {} (the server imports {})", file,
            call.ends_with("()") ? "def create_app(" : call + " = " + constructor + "(", entry));
        return entry;
    }
    return std::nullopt;
}

std::string django_project(const fs::path& dir, Detection& d) {
    auto text = read_if_present(dir, "manage.py");
    std::smatch m;
    static const std::regex settings(R"(DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)\.settings)");
    if (text && *text && std::regex_search(**text, m, settings)) {
        d.evidence.push_back(
            fmt::format("manage.py: settings {}.settings (the server imports {}.wsgi)", m[1].str(),
                        m[1].str()));
        return m[1];
    }
    d.notes.push_back("set the WSGI module in the Dockerfile's CMD (PROJECT.wsgi)");
    return "mysite";
}

// How the server starts; `bin` is where its program is: "" in the image (on its PATH), ".venv/bin/"
// on the process engine. `entry` is the app object, or the file the generic template runs.
std::string serve_command(std::string_view template_name, const std::string& entry,
                          std::string_view bin) {
    if (template_name == "python")
        return fmt::format("exec {}python {}", bin, entry);
    if (template_name == "python-fastapi")
        return fmt::format(R"(exec {}uvicorn {} --host "$HOST" --port "$PORT" --proxy-headers)",
                           bin, entry);
    return fmt::format(R"(exec {}gunicorn {} --bind "$HOST:$PORT" --workers 2 --access-logfile -)",
                       bin, entry);
}

void set_commands(Detection& d, const std::string& entry) {
    d.vars["python_cmd"] = serve_command(d.template_name, entry, "");
    d.vars["process_run"] = toml_string(serve_command(d.template_name, entry, ".venv/bin/"));
}

// [build] cache on the process engine (templates/_shared/build-cache.toml): no paths.
constexpr std::string_view k_process_cache =
    R"(# No cache paths: a virtual environment cannot move to another release folder (its scripts
# name the one it was made in); pip reinstalls it from its cache in $CACHE_DIR/pip instead.
)";

// The dependencies and the server (`server`: "" for the generic template): in the image, and
// into a virtual environment in the release on the process engine, with pip's cache in
// $CACHE_DIR (docs/build-cache.md).
void set_install(Detection& d, bool requirements, std::string_view server) {
    auto what = requirements ? std::string("-r requirements.txt") : std::string(".");
    if (!server.empty())
        what += fmt::format(" {}", server);
    d.vars["python_install"] = fmt::format(
        "{}\nRUN pip install {}", requirements ? "COPY requirements.txt ./" : "COPY . .", what);
    auto build = fmt::format(
        R"(python3 -m venv .venv && PIP_CACHE_DIR="$CACHE_DIR/pip" .venv/bin/pip install {})",
        what);
    if (d.template_name == "python-django")
        build += " && { .venv/bin/python manage.py collectstatic --noinput || echo 'collectstatic "
                 "skipped: set STATIC_ROOT in settings.py'; }";
    d.vars["process_build"] = toml_string(build);
    d.vars["process_cache"] = k_process_cache;
}

const Framework* framework(std::string_view template_name) {
    for (const auto& f : k_frameworks)
        if (template_name == f.template_name)
            return &f;
    return nullptr;
}

// The generic template's program: the first of these files there is.
constexpr const char* k_programs[] = {"main.py", "app.py", "server.py"};

} // namespace

Vars python_defaults(std::string_view template_name) {
    const auto* f = framework(template_name);
    if (!f && template_name != "python")
        return {};
    Detection d;
    d.template_name = template_name;
    set_install(d, true, f ? f->server : "");
    std::string entry = template_name == "python-django"    ? "mysite.wsgi"
                        : template_name == "python-fastapi" ? "main:app"
                        : template_name == "python"         ? k_programs[0]
                                                            : "app:app";
    set_commands(d, entry);
    d.vars["stack"] = f ? f->name : "Python";
    d.vars["port"] = "8000";
    if (template_name == "python-django")
        d.vars["python_extra"] =
            "RUN python manage.py collectstatic --noinput || echo 'collectstatic skipped: "
            "set STATIC_ROOT in settings.py'\n";
    return d.vars;
}

Found python(const fs::path& dir) {
    Packages packages;
    auto requirements = read_if_present(dir, "requirements.txt");
    if (!requirements)
        return requirements.error();
    if (*requirements)
        read_requirements(**requirements, packages);
    auto pyproject = read_if_present(dir, "pyproject.toml");
    if (!pyproject)
        return pyproject.error();
    std::string project_name;
    if (*pyproject)
        if (auto ok = read_pyproject(**pyproject, packages, project_name); !ok)
            return ok.error();
    bool manage_py = exists(dir, "manage.py");
    if (!*requirements && !*pyproject && !manage_py)
        return std::optional<Detection>();
    // The app's name from pyproject.toml, when it has one.
    auto found = [&project_name](Detection d) {
        if (!project_name.empty()) {
            d.app = project_name;
            d.app_from = "pyproject.toml";
        }
        return std::optional<Detection>(std::move(d));
    };
    for (const auto& f : k_frameworks) {
        auto it = packages.find(f.package);
        bool django_by_manage = std::string_view(f.package) == "django" && manage_py;
        if (it == packages.end() && !django_by_manage)
            continue;
        Detection d;
        d.template_name = f.template_name;
        d.stack = fmt::format("Python ({})", f.name);
        d.evidence.push_back(it != packages.end() ? fmt::format("{}: \"{}\"", it->second, f.package)
                                                  : "manage.py: present (a Django project)");
        d.vars = python_defaults(f.template_name);
        d.vars["stack"] = d.stack;
        set_install(d, requirements->has_value(), f.server);
        std::string entry;
        if (d.template_name == "python-django")
            entry = django_project(dir, d) + ".wsgi";
        else if (auto found =
                     find_entry(dir, d.template_name == "python-flask" ? "Flask" : "FastAPI", d))
            entry = *found;
        else {
            entry = d.template_name == "python-flask" ? "app:app" : "main:app";
            d.notes.push_back(fmt::format("no {} app object found: the Dockerfile's CMD imports "
                                          "{}; change it if yours is elsewhere",
                                          f.name, entry));
        }
        set_commands(d, entry);
        return found(std::move(d));
    }
    // Python, but no framework we know: a program that starts its own server, if there is one.
    for (const char* program : k_programs) {
        if (!exists(dir, program))
            continue;
        Detection d;
        d.template_name = "python";
        d.stack = "Python";
        d.evidence.push_back(fmt::format("{}: present, and no Django, FastAPI or Flask in it",
                                         *requirements ? "requirements.txt" : "pyproject.toml"));
        d.evidence.push_back(
            fmt::format("{}: present (python {} starts the app)", program, program));
        d.vars = python_defaults("python");
        d.vars["stack"] = d.stack;
        set_install(d, requirements->has_value(), "");
        set_commands(d, program);
        d.notes.push_back("the program must listen on os.environ[\"HOST\"] and "
                          "os.environ[\"PORT\"]");
        return found(std::move(d));
    }
    return std::optional<Detection>();
}

} // namespace cli::init::stacks
