// deployctl build-cache ls | clear: the app's build cache on each host
// (docs/build-cache.md).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

enum class CacheAction { ls, clear };

common::Status build_cache(Context& ctx, CacheAction action) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    const std::string path = app_path(target->app) + "/build-cache";
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             if (action == CacheAction::ls) {
                                 auto answer = client.get_json(path);
                                 if (!answer)
                                     return answer.error();
                                 ctx.out->emit(output::BuildCache{host, *answer});
                                 return {};
                             }
                             auto answer = client.remove(path);
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::BuildCacheCleared{host, *answer});
                             return {};
                         });
}

} // namespace

void add_build_cache(CLI::App& app, Context& ctx) {
    auto select = [&ctx](CacheAction action) {
        return
            [&ctx, action] { ctx.command = [&ctx, action] { return build_cache(ctx, action); }; };
    };
    auto* cmd = app.add_subcommand("build-cache", "List or clear the app's build cache (what "
                                                  "builds keep between them, and builds to reuse)");
    cmd->require_subcommand(1);
    cmd->add_subcommand("ls", "List the cache on each host: [build] cache paths, $CACHE_DIR, "
                              "builds kept for reuse")
        ->callback(select(CacheAction::ls));
    cmd->add_subcommand("clear", "Remove the app's build cache on each host: the next build "
                                 "starts from nothing and reuses no earlier build")
        ->callback(select(CacheAction::clear));
    cmd->footer(
        "Examples:\n  deployctl build-cache ls\n  deployctl build-cache ls --json\n"
        "  deployctl build-cache clear -t staging\n\n"
        "deploy.toml's [build] cache lists the paths kept between builds (\"node_modules\"),\n"
        "$CACHE_DIR is the build command's own cache folder, and [build] cache_max bounds\n"
        "both (least recently used dropped first). Clearing waits for no build: while\n"
        "one uses the cache it is refused (exit 5), try again. See docs/build-cache.md.\n");
}

} // namespace cli::commands
