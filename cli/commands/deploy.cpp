// deployctl deploy [DIR]: package the git tree, upload what is missing,
// create the deployment and follow it.

#include <cli/commands/commands.hpp>
#include <cli/commands/steps.hpp>
#include <cli/target.hpp>
#include <common/config.hpp>
#include <common/hash.hpp>
#include <common/manifest.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

void report_package(Context& ctx, const Target& target, const package::SourceTree& tree,
                    const DeployOptions& options) {
    for (const auto& w : tree.warnings())
        ctx.out->warning(w);
    if (!options.dirty && tree.uncommitted() > 0)
        ctx.out->warning(fmt::format("{} uncommitted change{} not included (commit them, or "
                                     "pass --dirty)",
                                     tree.uncommitted(),
                                     tree.uncommitted() == 1 ? " is" : "s are"));
    output::PackageSummary summary;
    summary.app = target.app;
    summary.commit = tree.commit();
    summary.message = tree.message();
    summary.files = tree.manifest().entries.size();
    summary.bytes = tree.manifest().total_bytes();
    summary.dirty = tree.dirty();
    ctx.out->packaged(summary);
}

nlohmann::json deployment_request(const Target& target, const package::SourceTree& tree) {
    return {{"config", target.config_text},
            {"manifest", common::manifest_to_json(tree.manifest())},
            {"commit", tree.commit()},
            {"message", tree.message()},
            {"dirty", tree.dirty()}};
}

// The deploy.toml of the deployed tree: the committed one unless --dirty.
common::Status use_deployed_config(Context& ctx, Target& target, const package::SourceTree& tree) {
    for (const auto& e : tree.manifest().entries) {
        if (e.path != "deploy.toml" || e.digest.empty())
            continue;
        if (e.digest == common::sha256_hex(target.config_text))
            return {};
        auto text = tree.read(e.digest);
        if (!text)
            return text.error();
        auto config = common::parse_config(*text, "deploy.toml (committed)");
        if (!config)
            return config.error();
        ctx.out->warning("deploy.toml has uncommitted changes: deploying the committed version");
        target.config_text = std::move(*text);
        return {};
    }
    return {};
}

} // namespace

common::Status deploy(Context& ctx, const DeployOptions& options) {
    auto target = resolve_target(ctx, options.dir, ConfigNeed::required);
    if (!target)
        return target.error();
    auto tree = package::package_source(options.dir, options.dirty ? package::Mode::dirty
                                                                   : package::Mode::committed);
    if (!tree)
        return tree.error();
    if (tree->manifest().entries.empty())
        return common::make_error(
            common::ErrorKind::usage,
            fmt::format("nothing to deploy: {} has no committed files", options.dir));
    report_package(ctx, *target, *tree, options);
    if (auto st = use_deployed_config(ctx, *target, *tree); !st)
        return st;
    auto request = deployment_request(*target, *tree);
    return for_each_host(
        ctx, *target, OnError::stop,
        [&](transport::Client& client, const std::string& host) -> common::Status {
            auto started = std::chrono::steady_clock::now();
            auto uploaded = upload_blobs(client, *tree, *ctx.out, host);
            if (!uploaded)
                return uploaded.error();
            auto created = client.post_json(app_path(target->app) + "/deployments", request);
            if (!created)
                return created.error();
            std::string release = created->value("release", "");
            if (release.empty())
                return common::make_error(common::ErrorKind::internal,
                                          "the agent created a deployment but did not say its id");
            ctx.out->created(host, release, created->value("state", "QUEUED"));
            if (options.no_follow)
                return {};
            return follow_release(ctx, client, host, target->app, release, started);
        });
}

} // namespace cli::commands
