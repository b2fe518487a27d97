#pragma once
// deployctl init's templates: templates/NAME/{deploy.toml, Dockerfile, process.toml,
// description, needs}, embedded in the binary, and the {{placeholder}} filling that turns them
// into files.

#include <common/result.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli::init {

// Values for {{NAME}} placeholders ("app", "port", ...).
using Vars = std::map<std::string, std::string, std::less<>>;

// Which agents the files are for: one with a container engine (a Dockerfile where the stack
// has one), or one that runs plain processes only (build and run commands, no Dockerfile).
enum class Engine { container, process };

struct TemplateInfo {
    std::string name;
    std::string description;
    bool has_dockerfile = false; // the template writes a Dockerfile too
    bool has_process = false;    // process.toml: its deploy.toml for the process engine
    // What the agent must have to run the app without a container ("" = it cannot: the
    // template needs a container engine): the first line of templates/NAME/needs, with
    // {{placeholders}}.
    std::string needs;
    // The template can be written for `engine`.
    bool supports(Engine engine) const { return engine == Engine::container || !needs.empty(); }
};

// Every template, sorted by name (templates/_shared holds pieces, not a template).
std::vector<TemplateInfo> list_templates();
std::optional<TemplateInfo> find_template(std::string_view name);

// Fills {{NAME}} from `vars`; {{shared:FILE}} inserts templates/_shared/FILE, filled too.
// An unknown placeholder is an error (a template bug; the tests render every template).
common::Result<std::string> render(std::string_view text, const Vars& vars);

struct RenderedFile {
    std::string name; // "deploy.toml" or "Dockerfile"
    std::string content;
};

// For Engine::container: deploy.toml, then the Dockerfile when the template has one. For
// Engine::process: deploy.toml only, from process.toml when the template has one.
common::Result<std::vector<RenderedFile>>
render_template(const TemplateInfo& info, const Vars& vars, Engine engine = Engine::container);

// `text` as a TOML string: "..." when it has no quote or backslash, else a literal string
// ('...') when it can be one, else "..." with them escaped. For the placeholders that hold
// shell commands.
std::string toml_string(std::string_view text);

} // namespace cli::init
