#pragma once
// Which app on which agents a command is about: deploy.toml, -a, -t, --host.

#include <cli/context.hpp>
#include <common/config.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cli {

// hosts_only: deploy.toml is optional and no app is needed (e.g. `agent info`).
enum class ConfigNeed { required, optional, hosts_only };

struct Target {
    std::optional<common::AppConfig> config;
    std::string config_text; // deploy.toml as written, sent with a deployment
    std::string app;
    std::vector<std::string> hosts;
    SshSettings ssh;           // from the selected target (selected_target)
    transport::TlsOptions tls; // likewise, or --ca-file / --fingerprint
};

// A deploy.toml read elsewhere than DIR/deploy.toml: `deploy` reads the one of the tree it
// deploys (cli/package/deployed_config.hpp).
struct ConfigText {
    std::string text;
    std::string source; // the name its errors start with (FILE:LINE:COL)
};

// Reads DIR/deploy.toml, the working copy (optional for the commands other than deploy
// when -a and --host say enough), or `given`, and resolves the app and its agents.
common::Result<Target> resolve_target(const Context& ctx, const std::filesystem::path& dir,
                                      ConfigNeed need, const ConfigText* given = nullptr);

// The target's hosts, parsed and checked (plain http:// only to loopback) before any
// is contacted.
common::Result<std::vector<HostUrl>> host_urls(const Target& target);

enum class OnError { stop, keep_going };
using HostFn = std::function<common::Status(transport::Client& client, const std::string& host)>;

// Runs `fn` against each agent in turn. All URLs are checked before the first
// is contacted. With several agents, errors are printed as they happen, and
// also kept in `errors` (by host URL) when given.
common::Status for_each_host(Context& ctx, const Target& target, OnError on_error, const HostFn& fn,
                             std::map<std::string, common::Error>* errors = nullptr);

// How https:// agents are verified from the command line alone (--ca-file /
// --fingerprint, else the system's CA store), for a command with no target.
common::Result<transport::TlsOptions> command_line_tls(const GlobalOptions& g);

// Release ids are v1, v2, ...: anything else is a usage error.
common::Status check_release_id(const std::string& id);

// "/v1/apps/hello".
std::string app_path(const std::string& app);

} // namespace cli
