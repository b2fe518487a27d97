#pragma once
// One detector per stack (stacks_*.cpp), used by detect.cpp in order of precedence.
// Each returns nullopt when its files are absent.

#include <cli/init/detect.hpp>

#include <nlohmann/json.hpp>

namespace cli::init::stacks {

namespace fs = std::filesystem;
using Found = common::Result<std::optional<Detection>>;

Found node(const fs::path& dir);   // package.json
Found python(const fs::path& dir); // requirements.txt, pyproject.toml, manage.py
Found go(const fs::path& dir);     // go.mod
Found php(const fs::path& dir);    // composer.json
Found rust(const fs::path& dir);   // Cargo.toml
Found c_make(const fs::path& dir); // a Makefile, and C or C++ sources

// The placeholders of the templates of one language, with nothing detected (init --template
// NAME in an empty folder): node-server and node-next; python and python-*; go and php; rust
// and c-make.
Vars node_defaults(std::string_view template_name);
Vars python_defaults(std::string_view template_name);
Vars go_php_defaults(std::string_view template_name);
Vars rust_c_defaults(std::string_view template_name);

// The text of dir/name, nullopt when it does not exist; an unreadable file is an error.
common::Result<std::optional<std::string>> read_if_present(const fs::path& dir,
                                                           std::string_view name);
// dir/name parsed as a JSON object, nullopt when absent; not JSON is a config error.
common::Result<std::optional<nlohmann::json>> read_json_object(const fs::path& dir,
                                                               std::string_view name);
bool exists(const fs::path& dir, std::string_view name);

} // namespace cli::init::stacks
