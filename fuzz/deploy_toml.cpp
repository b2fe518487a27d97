// deploy.toml as the agent parses it from a deployment request (and the CLI
// from disk): common::parse_config must never crash or hang, whatever the text.
// An accepted config holds what the rest of the agent relies on: a valid app
// name (it becomes a directory and a host name), a static.dir that is a safe
// relative path or ".", a health path starting with '/', keep within 1..1000.
// A refused one is a config error that names the source, "deploy.toml:...". An accepted
// one made a preview's (preview_config_text) parses again as the preview's.

#include <common/config.hpp>
#include <common/manifest.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    auto config = common::parse_config(text, "deploy.toml");
    if (!config) {
        FUZZ_CHECK(config.error().kind == common::ErrorKind::config);
        FUZZ_CHECK(config.error().message.rfind("deploy.toml", 0) == 0);
        return 0;
    }
    FUZZ_CHECK(common::is_valid_app_name(config->app));
    FUZZ_CHECK(config->app.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") ==
               std::string::npos);
    if (config->static_site)
        FUZZ_CHECK(config->static_site->dir == "." ||
                   common::is_safe_relative_path(config->static_site->dir));
    FUZZ_CHECK(!config->run.health.path.empty() && config->run.health.path.front() == '/');
    FUZZ_CHECK(config->deploy.keep >= 1 && config->deploy.keep <= 1000);
    FUZZ_CHECK(config->run.port >= 0 && config->run.port <= 65535);
    for (const auto& [name, target] : config->targets)
        FUZZ_CHECK(name == target.name);
    // A pull request's deploy.toml made a preview's (written back out by toml++): either an
    // error, or a deploy.toml of APP-pr-7 that parses, with every domain under pr-7.APP.
    if (auto preview = common::preview_config_text(text, config->app, 7)) {
        auto parsed = common::parse_config(*preview, "deploy.toml");
        FUZZ_CHECK(parsed);
        FUZZ_CHECK(parsed->app == config->app + "-pr-7");
        FUZZ_CHECK(!parsed->preview);
        for (const auto& [name, target] : parsed->targets)
            for (const auto& domain : target.domains)
                FUZZ_CHECK(domain.rfind("pr-7." + config->app + ".", 0) == 0);
    }
    return 0;
}
