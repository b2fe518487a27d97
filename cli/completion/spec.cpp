// Reads the completion model from the CLI11 App tree.

#include <CLI/CLI.hpp>
#include <cli/completion/spec.hpp>

#include <algorithm>

namespace cli::completion {

namespace {

// "TEXT:{read,deploy,admin}" (an IsMember check) -> read, deploy, admin.
std::vector<std::string> choices_of(const std::string& type_name) {
    const auto open = type_name.find(":{");
    const auto close = type_name.rfind('}');
    if (open == std::string::npos || close == std::string::npos || close < open)
        return {};
    std::vector<std::string> out;
    std::string word;
    for (char ch : type_name.substr(open + 2, close - open - 2)) {
        if (ch == ',') {
            out.push_back(word);
            word.clear();
        } else {
            word += ch;
        }
    }
    out.push_back(word);
    return out;
}

// What a value completes to, from its type name ("DIR", "FILE", "RELEASE")
// or positional name, or its option name (-t/--target: deploy.toml's targets).
Words words_for(const CLI::Option& opt, const std::vector<std::string>& choices) {
    if (!choices.empty())
        return Words::choices;
    std::string type = opt.get_type_name();
    type = type.substr(0, type.find(':'));
    const std::string& name = opt.get_positional() ? opt.get_name() : type;
    const auto& lnames = opt.get_lnames();
    if (std::find(lnames.begin(), lnames.end(), "target") != lnames.end())
        return Words::targets;
    if (name == "RELEASE" || type == "RELEASE")
        return Words::releases;
    if (name == "DIR" || type == "DIR")
        return Words::dirs;
    if (name == "FILE" || type == "FILE")
        return Words::files;
    return Words::none;
}

OptionSpec option_spec(const CLI::Option& opt) {
    OptionSpec spec;
    for (const auto& s : opt.get_snames())
        spec.names.push_back("-" + s);
    for (const auto& l : opt.get_lnames())
        spec.names.push_back("--" + l);
    spec.description = opt.get_description();
    spec.takes_value = opt.get_expected_min() > 0; // a flag expects no value
    if (spec.takes_value) {
        spec.choices = choices_of(opt.get_type_name());
        spec.words = words_for(opt, spec.choices);
    }
    return spec;
}

void add_unique(std::vector<OptionSpec>& options, OptionSpec spec) {
    for (const auto& have : options)
        for (const auto& name : spec.names)
            if (std::find(have.names.begin(), have.names.end(), name) != have.names.end())
                return;
    options.push_back(std::move(spec));
}

CommandSpec describe(CLI::App& app, const std::vector<OptionSpec>& inherited) {
    CommandSpec spec;
    spec.name = app.get_name();
    spec.description = app.get_description();
    for (const CLI::Option* opt : app.get_options()) {
        if (opt->get_group().empty())
            continue; // hidden
        if (opt->get_positional() && !opt->nonpositional()) {
            if (spec.argument.words == Words::none) {
                spec.argument = option_spec(*opt);
                spec.argument.names.clear();
            }
            continue;
        }
        add_unique(spec.options, option_spec(*opt));
    }
    for (const auto& option : inherited) // the parents' options work after a command too
        add_unique(spec.options, option);
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
        if (sub->get_group().empty())
            continue; // hidden, e.g. __complete
        spec.commands.push_back(describe(*sub, spec.options));
    }
    return spec;
}

void flatten(const CommandSpec& command, const std::string& path, std::vector<PathedCommand>& out) {
    out.push_back({path, &command});
    for (const auto& sub : command.commands)
        flatten(sub, path + " " + sub.name, out);
}

} // namespace

CommandSpec describe(CLI::App& app) {
    return describe(app, {});
}

std::vector<PathedCommand> flatten(const CommandSpec& root) {
    std::vector<PathedCommand> out;
    flatten(root, root.name, out);
    return out;
}

std::vector<std::string> context_options(const CommandSpec& root) {
    std::vector<std::string> out;
    for (const auto& option : root.options)
        if (option.takes_value)
            out.insert(out.end(), option.names.begin(), option.names.end());
    return out;
}

// What a value completes to, as the script's words table says it:
// "@targets", "@releases", "@dirs", "@files", or the choices themselves.
std::string words_entry(const OptionSpec& option) {
    switch (option.words) {
    case Words::targets:
        return "@targets";
    case Words::releases:
        return "@releases";
    case Words::dirs:
        return "@dirs";
    case Words::files:
        return "@files";
    case Words::choices:
        return join(option.choices);
    case Words::none:
        break;
    }
    return "";
}

std::string join(const std::vector<std::string>& words) {
    std::string out;
    for (const auto& word : words)
        out += (out.empty() ? "" : " ") + word;
    return out;
}

std::string sh_quote(const std::string& text) {
    std::string out = "'";
    for (char ch : text) {
        if (ch == '\'')
            out += "'\\''";
        else
            out += ch;
    }
    return out + "'";
}

} // namespace cli::completion
