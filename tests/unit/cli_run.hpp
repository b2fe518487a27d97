#pragma once
// Runs deployctl commands in process, through their command-line wiring: the commands of
// cli/commands/commands.hpp, without the global options (set ctx.global instead), and
// JSON output into `out`.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/output/printer.hpp>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace test {

struct CliRun {
    std::ostringstream out, err;
    std::unique_ptr<cli::output::Printer> printer = cli::output::make_json_printer(out, err);
    cli::Context ctx;

    CliRun() { ctx.out = printer.get(); }

    // `deployctl ARGS...`: parses (CLI::ParseError on a usage error), then runs the handler
    // the parse chose.
    common::Status run(std::vector<std::string> args) {
        CLI::App app{"deployctl", "deployctl"};
        app.require_subcommand(1);
        for (auto add : cli::commands::k_commands)
            add(app, ctx);
        std::reverse(args.begin(), args.end()); // CLI11 takes them last first
        app.parse(args);
        return ctx.command();
    }
};

} // namespace test
