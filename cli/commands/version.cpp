// deployctl version

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <common/version.hpp>

namespace cli::commands {

namespace {

common::Status version(Context& ctx) {
    ctx.out->emit(output::Version{common::version()});
    return {};
}

} // namespace

void add_version(CLI::App& app, Context& ctx) {
    app.add_subcommand("version", "Print deployctl's version")->callback([&ctx] {
        ctx.command = [&ctx] { return version(ctx); };
    });
}

} // namespace cli::commands
