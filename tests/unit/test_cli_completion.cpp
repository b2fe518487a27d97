#include <CLI/CLI.hpp>
#include <cli/completion/spec.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

using namespace cli::completion;

namespace {

// A small command tree shaped like deployctl's.
struct Tree {
    CLI::App app{"test", "deployctl"};
    std::string target, dir, scope, release, shell, what;
    bool json = false;
    Tree() {
        app.add_option("-t,--target", target, "Deploy target")->type_name("NAME");
        app.add_option("-C", dir, "Run in DIR")->type_name("DIR");
        app.add_flag("--json", json, "NDJSON");
        auto* token = app.add_subcommand("token", "Manage tokens");
        token->add_subcommand("create", "Create a token")
            ->add_option("--scope", scope, "Scope")
            ->check(CLI::IsMember({"read", "deploy", "admin"}));
        token->add_subcommand("ls", "List the tokens");
        app.add_subcommand("logs", "Show logs")->add_option("RELEASE", release, "Release id");
        app.add_subcommand("completion", "Print a script")
            ->add_option("SHELL", shell, "The shell")
            ->check(CLI::IsMember({"bash", "zsh", "fish"}));
        auto* hidden = app.add_subcommand("__complete", "Words");
        hidden->group("");
        hidden->add_option("WHAT", what, "targets or releases");
    }
};

const OptionSpec* find_option(const CommandSpec& command, const std::string& name) {
    for (const auto& option : command.options)
        if (std::find(option.names.begin(), option.names.end(), name) != option.names.end())
            return &option;
    return nullptr;
}

const CommandSpec* find_command(const CommandSpec& command, const std::string& name) {
    for (const auto& sub : command.commands)
        if (sub.name == name)
            return &sub;
    return nullptr;
}

} // namespace

TEST_CASE("describe reads commands, options and what their values complete to") {
    Tree tree;
    const auto root = describe(tree.app);
    CHECK(root.name == "deployctl");

    SUBCASE("hidden commands are left out") {
        CHECK(find_command(root, "token"));
        CHECK(find_command(root, "logs"));
        CHECK_FALSE(find_command(root, "__complete"));
    }
    SUBCASE("options: names, whether they take a value, their words") {
        const auto* target = find_option(root, "--target");
        REQUIRE(target);
        CHECK(target->names == std::vector<std::string>{"-t", "--target"});
        CHECK(target->takes_value);
        CHECK(target->words == Words::targets);
        CHECK(find_option(root, "-C")->words == Words::dirs);
        CHECK_FALSE(find_option(root, "--json")->takes_value);
        CHECK(find_option(root, "--help"));
    }
    SUBCASE("nested commands inherit the global options; IsMember gives the choices") {
        const auto* create = find_command(*find_command(root, "token"), "create");
        REQUIRE(create);
        const auto* scope = find_option(*create, "--scope");
        REQUIRE(scope);
        CHECK(scope->words == Words::choices);
        CHECK(scope->choices == std::vector<std::string>{"read", "deploy", "admin"});
        CHECK(find_option(*create, "--target"));
        CHECK(find_option(*create, "--json"));
    }
    SUBCASE("arguments: RELEASE completes to release ids, SHELL to its choices") {
        CHECK(find_command(root, "logs")->argument.words == Words::releases);
        const auto& shell = find_command(root, "completion")->argument;
        CHECK(shell.words == Words::choices);
        CHECK(words_entry(shell) == "bash zsh fish");
    }
    SUBCASE("flatten gives every command's path") {
        std::vector<std::string> paths;
        for (const auto& [path, command] : flatten(root))
            paths.push_back(path);
        CHECK(std::find(paths.begin(), paths.end(), "deployctl token create") != paths.end());
        CHECK(context_options(root) == std::vector<std::string>{"-t", "--target", "-C"});
    }
}

TEST_CASE("the scripts carry the tree") {
    Tree tree;
    const auto root = describe(tree.app);
    SUBCASE("bash") {
        const auto script = bash_script(root);
        CHECK(script.find("['deployctl token']='create ls'") != std::string::npos);
        CHECK(script.find("['deployctl token create --scope']='read deploy admin'") !=
              std::string::npos);
        CHECK(script.find("['deployctl logs']='@releases'") != std::string::npos);
        CHECK(script.find("complete -F _deployctl deployctl") != std::string::npos);
        CHECK(script.find("__complete'") == std::string::npos);
    }
    SUBCASE("zsh") {
        const auto script = zsh_script(root);
        CHECK(script.rfind("#compdef deployctl\n", 0) == 0);
        CHECK(
            script.find("_subs+=('deployctl token' 'create:Create a token\nls:List the tokens')") !=
            std::string::npos);
    }
    SUBCASE("fish") {
        const auto script = fish_script(root);
        CHECK(script.find("-l scope -x -a 'read deploy admin'") != std::string::npos);
        CHECK(script.find("-s t -l target -x -a '(__deployctl_complete targets)'") !=
              std::string::npos);
    }
}

TEST_CASE("sh_quote quotes for bash and zsh") {
    CHECK(sh_quote("plain") == "'plain'");
    CHECK(sh_quote("it's") == "'it'\\''s'");
}
