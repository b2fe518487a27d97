#pragma once
// deployctl init's detection: which template fits a folder, and why.
// It reads the files (package.json as JSON, requirements.txt and pyproject.toml
// lines and tables, go.mod, composer.json, Cargo.toml, a Makefile, a Dockerfile) and keeps the
// evidence.

#include <cli/init/templates.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli::init {

struct Detection {
    std::string template_name;         // "node-server"
    std::string stack;                 // "Node.js (Express)"
    std::vector<std::string> evidence; // "package.json: \"express\" in dependencies"
    std::vector<std::string> notes;    // what the user should check before deploying
    Vars vars;                         // placeholder values learnt from the files
    std::string app;                   // a name from package.json etc., or empty
    std::string app_from;              // the file `app` comes from
};

// The template that fits `dir`, or nullopt when nothing is recognised. A file
// that is there but cannot be read or parsed (package.json that is not JSON) is
// an ErrorKind::config error naming it. For Engine::process a Dockerfile is not
// a candidate (that engine builds no images): the stack beside it is.
common::Result<std::optional<Detection>> detect(const std::filesystem::path& dir,
                                                Engine engine = Engine::container);

// Every placeholder's value for `template_name` when nothing was detected
// (init --template NAME in an empty folder); detection overrides some of them.
Vars default_vars(std::string_view template_name);

// `raw` made a valid app name (common::is_valid_app_name): lower case, other
// characters as '-', no leading digits or dashes, at most 63 characters; empty
// when nothing usable is left.
std::string app_name_from(std::string_view raw);

} // namespace cli::init
