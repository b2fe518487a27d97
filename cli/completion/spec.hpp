#pragma once
// deployctl's commands and options as plain data, read from the CLI11 App tree
// at run time, so that the completion scripts follow every command added.

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace cli::completion {

// What a value (of an option, or a command's argument) completes to.
enum class Words {
    none,     // free text: nothing to offer
    choices,  // a fixed list (CLI::IsMember)
    targets,  // the [targets.NAME] of deploy.toml: `deployctl __complete targets`
    releases, // the app's release ids: `deployctl __complete releases`
    dirs,     // directories
    files,    // files
};

struct OptionSpec {
    std::vector<std::string> names; // "-t", "--target"; empty for an argument
    std::string description;
    bool takes_value = false;
    Words words = Words::none;
    std::vector<std::string> choices; // Words::choices
};

struct CommandSpec {
    std::string name;
    std::string description;
    std::vector<OptionSpec> options; // its own and those inherited from its parents
    OptionSpec argument;             // its positional argument(s); Words::none when it has none
    std::vector<CommandSpec> commands;
};

// The visible commands and options of `app` (hidden ones, in the group "", are left out).
CommandSpec describe(CLI::App& app);

// Every command, depth first, with its path from the root ("deployctl env set").
struct PathedCommand {
    std::string path;
    const CommandSpec* command;
};
std::vector<PathedCommand> flatten(const CommandSpec& root);

// The root's options that take a value: passed on to `deployctl __complete`
// (-C, -t, --host, -a, ...), so that it reads the same deploy.toml and agents.
std::vector<std::string> context_options(const CommandSpec& root);

// The completion script for `shell` ("bash", "zsh" or "fish").
std::string bash_script(const CommandSpec& root);
std::string zsh_script(const CommandSpec& root);
std::string fish_script(const CommandSpec& root);

// What a value completes to, as the scripts' tables say it: "@targets",
// "@releases", "@dirs", "@files", or the choices themselves ("" for nothing).
std::string words_entry(const OptionSpec& option);

// The words separated by single spaces.
std::string join(const std::vector<std::string>& words);

// 'text' quoted for a POSIX shell (bash, zsh).
std::string sh_quote(const std::string& text);

} // namespace cli::completion
