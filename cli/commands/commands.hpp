#pragma once
// One function per deployctl command (one file each in cli/commands/).

#include <cli/context.hpp>
#include <common/result.hpp>

#include <string>
#include <vector>

namespace cli::commands {

struct DeployOptions {
    std::string dir = ".";
    bool no_follow = false;
    bool dirty = false;
    // Several hosts (docs/multi-host.md): override [deploy] strategy / max_parallel.
    std::string strategy; // "" = deploy.toml's (default parallel)
    int max_parallel = 0; // 0 = deploy.toml's (default: all hosts)
    bool no_rollback = false;
};

struct LogsOptions {
    std::string release; // empty: the PRODUCTION release
    bool follow = false;
};

enum class EnvAction { ls, set, unset };
struct EnvOptions {
    EnvAction action = EnvAction::ls;
    std::vector<std::string> args; // KEY=VALUE (set) or KEY (unset)
    bool secret = false;
};

common::Status deploy(Context& ctx, const DeployOptions& options);
common::Status env(Context& ctx, const EnvOptions& options);
common::Status status(Context& ctx);
common::Status releases(Context& ctx);
common::Status logs(Context& ctx, const LogsOptions& options);
common::Status rollback(Context& ctx, const std::string& release);
common::Status remove(Context& ctx, const std::string& release);
common::Status version(Context& ctx);

// deployctl token create|ls|revoke (the app of create is -a/--app).
enum class TokenAction { create, list, revoke };
struct TokenOptions {
    TokenAction action = TokenAction::list;
    bool all_apps = false;
    std::string scope;
    std::string expires;
    std::string name;
    std::string id; // revoke
};
common::Status token(Context& ctx, const TokenOptions& options);

// deployctl audit (the app filter is -a/--app).
struct AuditOptions {
    int limit = 50;
    std::string since;
};
common::Status audit(Context& ctx, const AuditOptions& options);

// deployctl init [DIR]: detect the stack, write deploy.toml (and a Dockerfile).
struct InitOptions {
    std::string dir = ".";
    std::string template_name; // --template: overrides detection
    bool force = false;        // replace existing files
    bool list = false;         // --list: only show the templates
};
common::Status init(Context& ctx, const InitOptions& options);

enum class AgentQuery { ping, info };
common::Status agent(Context& ctx, AgentQuery query);

// deployctl completion SHELL: prints `script` (or one JSON event with --json).
common::Status completion(Context& ctx, const std::string& shell, const std::string& script);
// deployctl __complete targets|releases (hidden): one word per line for the completion
// scripts; nothing at all on any error, and at most about a second of waiting for an agent.
common::Status complete_words(Context& ctx, const std::string& what);

} // namespace cli::commands
