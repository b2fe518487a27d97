#pragma once
// deployctl init's templates: templates/NAME/{deploy.toml, Dockerfile, description, needs},
// embedded in the binary, and the {{placeholder}} filling that turns them into files.

#include <common/result.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli::init {

// Values for {{NAME}} placeholders ("app", "port", ...).
using Vars = std::map<std::string, std::string, std::less<>>;

struct TemplateInfo {
    std::string name;
    std::string description;
    bool has_dockerfile = false; // the template writes a Dockerfile too
    // What the agent must have to run an app without a Dockerfile ("" = not said): the
    // first line of templates/NAME/needs.
    std::string needs;
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

// deploy.toml, then the Dockerfile when the template has one.
common::Result<std::vector<RenderedFile>> render_template(const TemplateInfo& info,
                                                          const Vars& vars);

} // namespace cli::init
