#pragma once
// deployctl's commands, one file each in cli/commands/. Each file owns its options, its
// CLI11 wiring (subcommands, options, help texts) and its handler, and exposes one
// add_X(app, ctx): it adds the command to `app`, and when the parse chooses the command,
// its CLI11 callback sets ctx.command to the handler that cli::run then runs.
//
// A new command: cli/commands/X.cpp with add_X, its declaration below and a line in
// k_commands (cli/CMakeLists.txt finds the file itself); then its docs and completions.

namespace CLI {
class App;
}

namespace cli {
struct Context;
}

namespace cli::commands {

void add_deploy(CLI::App& app, Context& ctx);
void add_status(CLI::App& app, Context& ctx);
void add_releases(CLI::App& app, Context& ctx);
void add_ps(CLI::App& app, Context& ctx);
void add_scale(CLI::App& app, Context& ctx);
void add_logs(CLI::App& app, Context& ctx);
void add_run(CLI::App& app, Context& ctx);
void add_rollback(CLI::App& app, Context& ctx);
void add_canary(CLI::App& app, Context& ctx); // canary [set N | promote | abort]
void add_rm(CLI::App& app, Context& ctx);
void add_apps(CLI::App& app, Context& ctx);
void add_lifecycle(CLI::App& app, Context& ctx); // stop, start, restart
void add_traffic(CLI::App& app, Context& ctx);   // maintenance, pause, resume
void add_destroy(CLI::App& app, Context& ctx);
void add_agent(CLI::App& app, Context& ctx);
void add_agent_install(CLI::App& agent, Context& ctx); // agent install | upgrade (of add_agent)
void add_env(CLI::App& app, Context& ctx);
void add_cron(CLI::App& app, Context& ctx);
void add_build_cache(CLI::App& app, Context& ctx); // build-cache ls | clear
void add_hooks(CLI::App& app, Context& ctx);       // hooks secret | ls
void add_previews(CLI::App& app, Context& ctx);    // previews
void add_certs(CLI::App& app, Context& ctx);       // certs
void add_token(CLI::App& app, Context& ctx);
void add_login(CLI::App& app, Context& ctx);
void add_audit(CLI::App& app, Context& ctx);
void add_init(CLI::App& app, Context& ctx);
void add_completion(CLI::App& app, Context& ctx); // and the hidden __complete
void add_version(CLI::App& app, Context& ctx);

using AddCommand = void (*)(CLI::App& app, Context& ctx);

// Every command, in the order `deployctl --help` lists them.
// clang-format off
inline constexpr AddCommand k_commands[] = {
    add_deploy,
    add_status,
    add_releases,
    add_ps,
    add_scale,
    add_logs,
    add_run,
    add_rollback,
    add_canary,
    add_rm,
    add_apps,
    add_lifecycle,
    add_traffic,
    add_destroy,
    add_agent,
    add_env,
    add_cron,
    add_build_cache,
    add_hooks,
    add_previews,
    add_certs,
    add_token,
    add_login,
    add_audit,
    add_init,
    add_completion,
    add_version,
};
// clang-format on

} // namespace cli::commands
