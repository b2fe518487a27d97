// Rust (Cargo.toml: the package, its binaries, or a workspace's members) and C or C++ built
// by a Makefile (the program it builds: its default goal, or a TARGET, BIN, PROG or PROGRAM
// variable).

#include <cli/init/stacks.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <regex>
#include <set>
#include <sstream>

namespace cli::init::stacks {

namespace {

// What the Dockerfile names, and the user replaces, when init found no program to start.
constexpr std::string_view k_unknown_program = "PROGRAM";

// A program's name as it may go, unquoted, into a shell command and a Dockerfile's COPY.
bool plain_name(std::string_view name) {
    static const std::regex plain(R"([A-Za-z0-9_][A-Za-z0-9_.+/-]*)");
    return std::regex_match(name.begin(), name.end(), plain) &&
           name.find("..") == std::string_view::npos;
}

// No program found in `where` ("Cargo.toml", "the Makefile"): the Dockerfile says PROGRAM
// under a comment saying so, and the process engine's app exits at once, saying what to set.
void unknown_program(std::string_view where, Vars& vars) {
    vars["program_note"] = fmt::format("# deployctl init found no program in {}: replace {} "
                                       "with the one the build makes.\n",
                                       where, k_unknown_program);
    vars["process_run"] = toml_string(fmt::format(
        "echo 'deployctl init found no program in {}: set [run] command in deploy.toml to start "
        "the one the build makes' >&2; exit 1",
        where));
}

// ---- Rust ---------------------------------------------------------------------------------

// A binary of a package, and why init thinks so ("[[bin]] name").
struct Binary {
    std::string name;
    std::string why;
};

common::Result<toml::table> parse_manifest(const std::string& text, const std::string& file) {
    try {
        return toml::parse(std::string_view(text), std::string_view(file));
    } catch (const toml::parse_error& e) {
        return common::make_error(common::ErrorKind::config,
                                  fmt::format("{}:{}:{}: {}; fix it, or choose a template with "
                                              "--template NAME",
                                              file, e.source().begin.line, e.source().begin.column,
                                              e.description()));
    }
}

// The binaries of the package `manifest` in `dir`, the one `cargo run` starts first:
// [package] default-run, the [[bin]] targets, src/main.rs (named after the package), then
// src/bin/NAME.rs and src/bin/NAME/main.rs.
std::vector<Binary> binaries(const toml::table& manifest, const fs::path& dir) {
    std::vector<Binary> found;
    auto add = [&found](std::string name, std::string why) {
        for (const auto& b : found)
            if (b.name == name)
                return;
        if (plain_name(name) && name.find('/') == std::string::npos)
            found.push_back({std::move(name), std::move(why)});
    };
    const auto package = manifest["package"];
    add(package["default-run"].value_or(std::string()), "[package] default-run");
    if (const auto* bins = manifest["bin"].as_array())
        for (const auto& bin : *bins)
            if (const auto* table = bin.as_table())
                add((*table)["name"].value_or(std::string()), "[[bin]] name");
    if (!package["autobins"].value_or(true))
        return found;
    if (exists(dir, "src/main.rs"))
        add(package["name"].value_or(std::string()), "src/main.rs, named after the package");
    std::vector<std::string> more;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir / "src" / "bin", ec)) {
        const auto& path = entry.path();
        if (path.extension() == ".rs")
            more.push_back(path.stem().string());
        else if (fs::is_regular_file(path / "main.rs", ec))
            more.push_back(path.filename().string());
    }
    std::sort(more.begin(), more.end());
    for (auto& name : more)
        add(name, "src/bin/" + name);
    return found;
}

// The member folders of a [workspace] (default-members, else members); "DIR/*" is every
// folder of DIR that has a Cargo.toml, in name order; other globs are not followed.
std::vector<std::string> workspace_members(const toml::table& manifest, const fs::path& dir) {
    const auto* list = manifest["workspace"]["default-members"].as_array();
    if (!list)
        list = manifest["workspace"]["members"].as_array();
    std::vector<std::string> members;
    if (!list)
        return members;
    for (const auto& item : *list) {
        auto member = item.value_or(std::string());
        if (!member.ends_with("/*")) {
            if (member.find_first_of("*?[") == std::string::npos)
                members.push_back(member);
            continue;
        }
        auto parent = member.substr(0, member.size() - 2);
        std::vector<std::string> found;
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(dir / parent, ec))
            if (fs::is_regular_file(entry.path() / "Cargo.toml", ec))
                found.push_back(parent + "/" + entry.path().filename().string());
        std::sort(found.begin(), found.end());
        members.insert(members.end(), found.begin(), found.end());
    }
    return members;
}

// The oldest Rust that builds the package: its rust-version, or its edition's first release.
std::string rust_minimum(const toml::table& manifest) {
    const auto package = manifest["package"];
    if (auto version = package["rust-version"].value<std::string>())
        return fmt::format("Rust's cargo, rustc {} or newer (Cargo.toml's rust-version)", *version);
    auto edition = package["edition"].value_or(std::string());
    for (const auto& [name, first] : {std::pair{"2024", "1.85"}, std::pair{"2021", "1.56"}})
        if (edition == name)
            return fmt::format("Rust's cargo, rustc {} or newer (edition {})", first, edition);
    return "Rust's cargo";
}

// The process engine's commands for the binary `bin` ("": none found), with cargo's
// downloads and compiled crates in $CACHE_DIR (docs/build-cache.md); --locked with a
// Cargo.lock. The target directory stays in $CACHE_DIR, whose path never changes, so the
// program is copied out into the release.
void rust_commands(const std::string& bin, bool locked, Vars& vars) {
    vars["cargo_locked"] = locked ? " --locked" : "";
    auto build =
        fmt::format(R"(CARGO_HOME="$CACHE_DIR/cargo" CARGO_TARGET_DIR="$CACHE_DIR/target" )"
                    "cargo build --release{}",
                    vars["cargo_locked"]);
    if (bin.empty()) {
        vars["rust_bin"] = k_unknown_program;
        unknown_program("Cargo.toml", vars);
    } else {
        build += fmt::format(R"( && cp "$CACHE_DIR/target/release/{}" app)", bin);
        vars["rust_bin"] = bin;
        vars["program_note"] = "";
        vars["process_run"] = toml_string("exec ./app");
    }
    vars["process_build"] = toml_string(build);
    vars["process_cache"] =
        R"(# No cache paths: cargo keeps the crates it downloads (CARGO_HOME) and what it compiles
# (CARGO_TARGET_DIR) in $CACHE_DIR, whose path is the same for every build: the dependencies
# compile once, the app's own crates again (their files are new in each release). The
# program is copied out of $CACHE_DIR/target into the release, as ./app.
)";
}

// ---- C and C++ with a Makefile --------------------------------------------------------------

// What init reads of a Makefile: its variables (each one's last value; `+=` appends), its
// rules in order, as written. Recipes, conditionals and define blocks are skipped.
struct Makefile {
    std::string file;
    std::map<std::string, std::string, std::less<>> variables;
    struct Rule {
        std::vector<std::string> targets;
        std::vector<std::string> prerequisites;
        int line = 0;
    };
    std::vector<Rule> rules;
};

// A variable whose value init cannot know (VAR != command): never expanded.
constexpr std::string_view k_shell_value = "$(shell)";

std::vector<std::string> words(std::string_view text) {
    std::istringstream in{std::string(text)};
    std::vector<std::string> out;
    for (std::string word; in >> word;)
        out.push_back(word);
    return out;
}

// The first `c` of `text` outside $(...) and ${...}.
std::size_t find_outside_refs(std::string_view text, char c) {
    int depth = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '(' || text[i] == '{')
            ++depth;
        else if ((text[i] == ')' || text[i] == '}') && depth > 0)
            --depth;
        else if (text[i] == c && depth == 0)
            return i;
    }
    return std::string_view::npos;
}

// The Makefile's lines, with a backslash at the end joining the next, each with the number of
// its first line.
std::vector<std::pair<int, std::string>> logical_lines(const std::string& text) {
    std::vector<std::pair<int, std::string>> lines;
    std::istringstream in(text);
    bool joined = false;
    int number = 0;
    for (std::string line; std::getline(in, line);) {
        ++number;
        bool continues = !line.empty() && line.back() == '\\';
        if (continues)
            line.back() = ' ';
        if (joined)
            lines.back().second += line;
        else
            lines.emplace_back(number, line);
        joined = continues;
    }
    return lines;
}

Makefile read_makefile(const std::string& file, const std::string& text) {
    Makefile m;
    m.file = file;
    static const std::regex assignment(
        R"(^\s*(?:(?:export|override|private)\s+)*([A-Za-z0-9_.-]+)\s*(::?=|:::=|\?=|\+=|!=|=)\s*(.*)$)");
    bool in_define = false;
    for (auto& [number, line] : logical_lines(text)) {
        if (line.starts_with('\t'))
            continue; // a recipe
        line = line.substr(0, line.find('#'));
        auto directive = words(line);
        if (in_define) {
            in_define = directive.empty() || directive[0] != "endef";
            continue;
        }
        if (!directive.empty() && directive[0] == "define") {
            in_define = true;
            continue;
        }
        std::smatch match;
        if (std::regex_match(line, match, assignment)) {
            auto& value = m.variables[match[1].str()];
            auto op = match[2].str();
            if (op == "!=")
                value = k_shell_value;
            else if (op == "+=")
                value += (value.empty() ? "" : " ") + match[3].str();
            else if (op != "?=" || value.empty())
                value = match[3].str();
            continue;
        }
        auto colon = find_outside_refs(line, ':');
        if (colon == std::string::npos)
            continue; // include, ifeq, endif, vpath...
        std::string_view rest = std::string_view(line).substr(colon + 1);
        if (rest.starts_with(':'))
            rest.remove_prefix(1); // a double-colon rule
        rest = rest.substr(0, rest.find(';'));
        if (rest.find('=') != std::string_view::npos)
            continue; // a target-specific variable
        if (auto pattern = rest.find(':'); pattern != std::string_view::npos)
            rest.remove_prefix(pattern + 1); // a static pattern rule: the prerequisites
        m.rules.push_back({words(std::string_view(line).substr(0, colon)), words(rest), number});
    }
    return m;
}

// `text` with $(NAME) and ${NAME} replaced by the Makefile's values, nullopt when it calls a
// function, names an automatic variable or one the Makefile does not set.
std::optional<std::string> expand(std::string_view text, const Makefile& m, int depth = 0) {
    if (depth > 8)
        return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '$') {
            out += text[i];
            continue;
        }
        if (i + 1 < text.size() && text[i + 1] == '$') {
            out += '$';
            ++i;
            continue;
        }
        if (i + 1 >= text.size() || (text[i + 1] != '(' && text[i + 1] != '{'))
            return std::nullopt;
        auto close = text.find(text[i + 1] == '(' ? ')' : '}', i + 2);
        if (close == std::string_view::npos)
            return std::nullopt;
        auto name = text.substr(i + 2, close - i - 2);
        auto it = m.variables.find(name);
        if (it == m.variables.end() || it->second == k_shell_value)
            return std::nullopt; // a function, a substitution, or a variable not set here
        auto value = expand(it->second, m, depth + 1);
        if (!value)
            return std::nullopt;
        out += *value;
        i = close;
    }
    return out;
}

// Whether a name make builds can be the program: a plain name, not an object, a library or a
// source.
bool built_program(std::string_view name) {
    if (!plain_name(name))
        return false;
    auto dot = name.rfind('.');
    auto slash = name.rfind('/');
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
        return true;
    static const std::set<std::string, std::less<>> not_programs{
        ".o", ".a",  ".so",  ".lo",  ".la", ".obj", ".lib", ".dll", ".dylib",
        ".c", ".cc", ".cpp", ".cxx", ".h",  ".hpp", ".d",   ".mk"};
    return !not_programs.contains(name.substr(dot));
}

// The default goal: .DEFAULT_GOAL, else the first target that does not start with '.' (or
// has a '/') and is not a pattern; nullopt when it cannot be known (a target init cannot
// expand).
std::optional<std::string> default_goal(const Makefile& m) {
    if (auto it = m.variables.find(".DEFAULT_GOAL"); it != m.variables.end())
        return expand(it->second, m);
    for (const auto& rule : m.rules)
        for (const auto& target : rule.targets) {
            if ((target.starts_with('.') && target.find('/') == std::string::npos) ||
                target.find('%') != std::string::npos)
                continue;
            auto name = expand(target, m);
            if (!name)
                return std::nullopt;
            if (auto names = words(*name); !names.empty())
                return names[0];
        }
    return std::nullopt;
}

// The first rule that has `goal` among its targets, and prerequisites when one has them.
const Makefile::Rule* rule_of(const Makefile& m, const std::string& goal) {
    const Makefile::Rule* found = nullptr;
    for (const auto& rule : m.rules)
        for (const auto& target : rule.targets)
            if (auto name = expand(target, m); name && words(*name) == std::vector{goal}) {
                if (!rule.prerequisites.empty())
                    return &rule;
                if (!found)
                    found = &rule;
            }
    return found;
}

// The program the Makefile builds: its default goal when that is a file; when it is `all` or
// .PHONY, its first prerequisite that is; else the first of TARGET, BIN, PROG and PROGRAM.
// "" when none names one. What it read goes into the evidence, what to check into the notes.
std::string make_program(const Makefile& m, Detection& d) {
    std::set<std::string, std::less<>> phony;
    for (const auto& rule : m.rules)
        if (rule.targets == std::vector<std::string>{".PHONY"})
            for (const auto& p : rule.prerequisites)
                if (auto names = expand(p, m))
                    for (auto& name : words(*names))
                        phony.insert(name);
    auto starts = [&d](const std::string& program, std::string evidence) {
        d.evidence.push_back(
            fmt::format("{} (the run command starts ./{})", std::move(evidence), program));
        d.notes.push_back(fmt::format("the run command starts ./{}, the program init read from "
                                      "the Makefile: check that it is the one make builds",
                                      program));
        return program;
    };
    auto goal = default_goal(m);
    const auto* rule = goal ? rule_of(m, *goal) : nullptr;
    if (rule && *goal != "all" && !phony.contains(*goal) && built_program(*goal))
        return starts(*goal,
                      fmt::format("{} line {}: {}, the default goal", m.file, rule->line, *goal));
    std::vector<std::string> programs;
    for (const auto& p : rule ? rule->prerequisites : std::vector<std::string>{})
        if (auto names = expand(p, m))
            for (auto& name : words(*names))
                if (!phony.contains(name) && built_program(name))
                    programs.push_back(name);
    if (!programs.empty()) {
        if (programs.size() > 1)
            d.notes.push_back(fmt::format("{} also builds {}: the run command starts the first",
                                          *goal,
                                          fmt::join(programs.begin() + 1, programs.end(), ", ")));
        return starts(programs[0], fmt::format("{} line {}: {}: {}, the default goal's first "
                                               "prerequisite",
                                               m.file, rule->line, *goal, programs[0]));
    }
    for (const char* variable : {"TARGET", "BIN", "PROG", "PROGRAM"}) {
        auto it = m.variables.find(variable);
        auto value = it == m.variables.end() ? std::nullopt : expand(it->second, m);
        auto names = value ? words(*value) : std::vector<std::string>{};
        if (names.size() == 1 && built_program(names[0]))
            return starts(names[0], fmt::format("{}: {} = {}", m.file, variable, names[0]));
    }
    d.notes.push_back(fmt::format(
        "no program found in the {} (its default goal names none, nor does a TARGET, BIN, "
        "PROG or PROGRAM variable): set [run] command in deploy.toml, or the Dockerfile's "
        "COPY, to the program make builds",
        m.file));
    return "";
}

// C and C++ sources at the root and one folder down ("main.c", "src/http.cpp").
std::vector<std::string> c_sources(const fs::path& dir) {
    static const std::set<std::string, std::less<>> extensions{".c", ".cc", ".cpp", ".cxx"};
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        auto name = entry.path().filename().string();
        if (name.starts_with('.'))
            continue;
        if (extensions.contains(entry.path().extension().string()))
            found.push_back(name);
        else if (entry.is_directory(ec))
            for (const auto& inner : fs::directory_iterator(entry.path(), ec))
                if (extensions.contains(inner.path().extension().string()))
                    found.push_back(name + "/" + inner.path().filename().string());
    }
    std::sort(found.begin(), found.end());
    return found;
}

// The process engine's commands for `program` ("": none found): ccache's objects in
// $CACHE_DIR (docs/build-cache.md), through CC and CXX in make's environment when ccache is
// on the PATH, so that a Makefile that sets them itself keeps its own.
void c_commands(const std::string& program, Vars& vars) {
    vars["process_build"] = toml_string(
        R"(export CCACHE_DIR="$CACHE_DIR/ccache" CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true; )"
        R"(if command -v ccache >/dev/null; then export CC="ccache ${CC:-cc}" CXX="ccache ${CXX:-c++}"; fi; )"
        R"sh(make -j"$(nproc)")sh");
    vars["process_cache"] =
        R"(# No cache paths: ccache keeps the compiled objects in $CACHE_DIR/ccache and finds them from
# any release folder (CCACHE_BASEDIR, CCACHE_NOHASHDIR): make compiles every file of a new
# release, ccache only those that changed. CC and CXX go through ccache when it is on the
# agent's PATH, unless the Makefile sets them itself (CC ?= cc lets it in).
)";
    if (program.empty()) {
        vars["c_program"] = k_unknown_program;
        unknown_program("the Makefile", vars);
        return;
    }
    vars["c_program"] = program;
    vars["program_note"] = "";
    vars["process_run"] = toml_string("exec ./" + program);
}

} // namespace

Vars rust_c_defaults(std::string_view template_name) {
    Vars vars;
    if (template_name == "rust")
        rust_commands("", false, vars);
    else if (template_name == "c-make")
        c_commands("", vars);
    return vars;
}

Found rust(const fs::path& dir) {
    auto text = read_if_present(dir, "Cargo.toml");
    if (!text)
        return text.error();
    if (!*text)
        return std::optional<Detection>();
    TRY_ASSIGN(auto manifest, parse_manifest(**text, "Cargo.toml"));
    const bool locked = exists(dir, "Cargo.lock");
    Detection d;
    d.template_name = "rust";
    d.stack = "Rust";
    std::vector<Binary> bins;
    std::string bins_from = "Cargo.toml"; // the manifest the binaries are from
    if (const auto* package = manifest["package"].as_table()) {
        auto name = (*package)["name"].value_or(std::string());
        d.app = name;
        d.app_from = "Cargo.toml's [package] name";
        d.evidence.push_back(fmt::format("Cargo.toml: [package] name = \"{}\"", name));
        d.vars["rust_needs"] = rust_minimum(manifest);
        bins = binaries(manifest, dir);
    } else if (manifest["workspace"].as_table()) {
        auto members = workspace_members(manifest, dir);
        d.evidence.push_back(fmt::format("Cargo.toml: a [workspace] of {} member{}, no [package]",
                                         members.size(), members.size() == 1 ? "" : "s"));
        std::vector<std::string> with_programs;
        for (const auto& member : members) {
            auto file = member + "/Cargo.toml";
            auto member_text = read_if_present(dir, file);
            if (!member_text)
                return member_text.error();
            if (!*member_text)
                continue;
            TRY_ASSIGN(auto member_manifest, parse_manifest(**member_text, file));
            auto member_bins = binaries(member_manifest, dir / member);
            if (member_bins.empty())
                continue;
            with_programs.push_back(fmt::format("{} in {}", member_bins[0].name, member));
            if (!bins.empty())
                continue;
            bins = std::move(member_bins);
            bins_from = file;
            d.vars["rust_needs"] = rust_minimum(member_manifest);
        }
        if (with_programs.size() > 1)
            d.notes.push_back(fmt::format("the workspace builds several programs ({}): the build "
                                          "copies the first; change [build] command for another",
                                          fmt::join(with_programs, ", ")));
    } else {
        d.evidence.push_back("Cargo.toml: present, with neither [package] nor [workspace]");
    }
    if (bins.empty()) {
        d.notes.push_back("no binary found in Cargo.toml (a [[bin]], src/main.rs or src/bin/, "
                          "in the package or a workspace member): set the build command's cp "
                          "and [run] command in deploy.toml, or the Dockerfile's cp, to the "
                          "program cargo builds");
        rust_commands("", locked, d.vars);
    } else {
        d.evidence.push_back(fmt::format("{}: the binary {} ({}; the build copies "
                                         "target/release/{} to ./app)",
                                         bins_from, bins[0].name, bins[0].why, bins[0].name));
        if (bins.size() > 1) {
            std::vector<std::string> others;
            for (auto it = bins.begin() + 1; it != bins.end(); ++it)
                others.push_back(it->name);
            d.notes.push_back(fmt::format("{} builds other binaries too ({}): the build copies "
                                          "{} (set [package] default-run to pick another)",
                                          bins_from, fmt::join(others, ", "), bins[0].name));
        }
        rust_commands(bins[0].name, locked, d.vars);
    }
    if (locked)
        d.evidence.push_back("Cargo.lock: present (cargo build --locked: the versions it pins)");
    else
        d.notes.push_back("no Cargo.lock: each build resolves the dependencies again; commit one "
                          "(cargo generate-lockfile) and run init again for --locked builds");
    d.vars["stack"] = d.stack;
    d.notes.push_back("the program must listen on std::env::var(\"HOST\") and "
                      "std::env::var(\"PORT\")");
    return std::optional<Detection>(std::move(d));
}

Found c_make(const fs::path& dir) {
    std::optional<std::string> text;
    std::string file;
    for (const char* name : {"GNUmakefile", "makefile", "Makefile"}) { // make's order
        auto read = read_if_present(dir, name);
        if (!read)
            return read.error();
        if (*read) {
            text = std::move(*read);
            file = name;
            break;
        }
    }
    if (!text)
        return std::optional<Detection>();
    auto sources = c_sources(dir);
    if (sources.empty())
        return std::optional<Detection>();
    Detection d;
    d.template_name = "c-make";
    d.stack = "C/C++ (make)";
    auto shown = std::vector<std::string>(
        sources.begin(), sources.begin() + std::min<std::size_t>(3, sources.size()));
    d.evidence.push_back(fmt::format(
        "{}: present, with C or C++ sources ({}{})", file, fmt::join(shown, ", "),
        sources.size() > shown.size() ? fmt::format(" and {} more", sources.size() - shown.size())
                                      : ""));
    c_commands(make_program(read_makefile(file, *text), d), d.vars);
    d.vars["stack"] = d.stack;
    d.notes.push_back("the program must listen on getenv(\"HOST\") and getenv(\"PORT\")");
    return std::optional<Detection>(std::move(d));
}

} // namespace cli::init::stacks
