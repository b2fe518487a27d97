// deployctl version

#include <cli/commands/commands.hpp>
#include <common/version.hpp>

namespace cli::commands {

common::Status version(Context& ctx) {
    ctx.out->emit(output::Version{common::version()});
    return {};
}

} // namespace cli::commands
