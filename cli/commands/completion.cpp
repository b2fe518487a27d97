// deployctl completion SHELL: the completion script; deployctl __complete WHAT:
// the words it cannot know in advance (target names, release ids).

#include <cli/commands/commands.hpp>
#include <cli/credentials.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <iostream>
#include <set>

namespace cli::commands {

namespace {

// The agents of the app answer within a second, or the completion offers nothing.
constexpr long k_release_timeout_s = 1;

void complete_targets(const Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::required);
    if (!target || !target->config)
        return;
    for (const auto& [name, _] : target->config->targets)
        std::cout << name << '\n';
}

// The first http(s):// agent of the target: an ssh:// login is not cheap enough.
void complete_releases(const Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target || target->app.empty())
        return;
    for (const auto& host : target->hosts) {
        auto url = parse_host_url(host);
        if (!url || url->scheme == Scheme::ssh || !check_transport(*url))
            continue;
        auto token = token_for(url->base_url);
        if (!token)
            return;
        transport::HttpOptions options;
        options.token = *token;
        options.connect_timeout_s = k_release_timeout_s;
        options.request_timeout_s = k_release_timeout_s;
        if (url->scheme == Scheme::https)
            options.tls = target->tls;
        auto client = transport::make_http_client(url->base_url, options);
        auto answer = client->get_json(app_path(target->app) + "/releases");
        if (!answer || !answer->is_array())
            return;
        for (const auto& release : *answer)
            if (release.contains("id") && release["id"].is_string())
                std::cout << release["id"].get<std::string>() << '\n';
        return;
    }
}

} // namespace

common::Status completion(Context& ctx, const std::string& shell, const std::string& script) {
    if (ctx.global.json)
        std::cout
            << nlohmann::json{{"event", "completion"}, {"shell", shell}, {"script", script}}.dump()
            << '\n';
    else
        std::cout << script;
    return {};
}

// Prints nothing on any error: a completion must never disturb the command line.
common::Status complete_words(Context& ctx, const std::string& what) {
    if (what == "targets")
        complete_targets(ctx);
    else if (what == "releases")
        complete_releases(ctx);
    return {};
}

} // namespace cli::commands
