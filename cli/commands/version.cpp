// deployctl version

#include <cli/commands/commands.hpp>
#include <common/version.hpp>

namespace cli::commands {

common::Status version(Context& ctx) {
    ctx.out->version(common::version());
    return {};
}

} // namespace cli::commands
