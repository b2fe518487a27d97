// Preview environments (docs/git.md): a pull request's head commit deployed as app
// APP-pr-N through the same pipeline as any deploy, from the pull-request events of the
// app's webhook (handlers_hooks.cpp); removed when the pull request is closed or merged, or
// when more than [preview] max are open. GET /v1/apps/{app}/previews lists them (deployctl
// previews).
//
// What a pull request may change and what it may not: the preview's deploy.toml is the pull
// request's own (its build, its run, its [preview.env]), but whether previews are made, how
// many, from forks or not, and which of the app's secrets they get come from the serving
// release's deploy.toml, which only a deploy of the deploy branch changes.
#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/hooks.hpp>
#include <agent/git/fetch.hpp>
#include <common/config.hpp>
#include <common/hash.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;
using nlohmann::json;

// The string at `path` of `body`, "" when a member is missing or not a string.
std::string text_at(const json& body, std::initializer_list<const char*> path) {
    const json* node = &body;
    for (const char* key : path) {
        if (!node->is_object() || !node->contains(key))
            return "";
        node = &(*node)[key];
    }
    if (node->is_string())
        return node->get<std::string>();
    if (node->is_number_integer())
        return std::to_string(node->get<std::int64_t>());
    return "";
}

// What a pull-request event says, in one shape for the three providers.
struct PullRequest {
    int number = 0;
    std::string action;  // as the provider names it
    bool deploy = false; // opened, reopened, new commits
    bool close = false;  // closed or merged
    bool merged = false;
    std::string head; // commit id
    std::string base; // the branch it would merge into
    std::string ref;  // where the provider keeps its head: refs/pull/N/head, ...
    std::string from; // the repository of its head when that is another one (a fork)
};

// The pull request of a delivery, or why it cannot be read.
common::Result<PullRequest> read_pull_request(const std::string& provider, const json& body) {
    PullRequest pr;
    std::string number;
    if (provider == "gitlab") {
        number = text_at(body, {"object_attributes", "iid"});
        pr.action = text_at(body, {"object_attributes", "action"});
        pr.head = text_at(body, {"object_attributes", "last_commit", "id"});
        pr.base = text_at(body, {"object_attributes", "target_branch"});
        const auto source = text_at(body, {"object_attributes", "source_project_id"});
        if (source != text_at(body, {"object_attributes", "target_project_id"}))
            pr.from = "project " + (source.empty() ? std::string("?") : source);
        pr.deploy = pr.action == "open" || pr.action == "reopen" || pr.action == "update";
        pr.close = pr.action == "close" || pr.action == "merge";
        pr.merged = pr.action == "merge";
    } else { // github, gitea
        number = text_at(body, {"number"});
        pr.action = text_at(body, {"action"});
        pr.head = text_at(body, {"pull_request", "head", "sha"});
        pr.base = text_at(body, {"pull_request", "base", "ref"});
        const auto head_repo = text_at(body, {"pull_request", "head", "repo", "full_name"});
        if (head_repo != text_at(body, {"pull_request", "base", "repo", "full_name"}))
            pr.from = head_repo.empty() ? std::string("a deleted repository") : head_repo;
        pr.deploy = pr.action == "opened" || pr.action == "reopened" ||
                    pr.action == "synchronize" || pr.action == "synchronized";
        pr.close = pr.action == "closed";
        if (auto it = body.find("pull_request"); it != body.end() && it->is_object())
            if (auto merged = it->find("merged"); merged != it->end() && merged->is_boolean())
                pr.merged = merged->get<bool>();
    }
    if (number.empty() || number.size() > 9 ||
        number.find_first_not_of("0123456789") != std::string::npos || std::stoi(number) <= 0)
        return make_error(ErrorKind::bad_request,
                          provider == "gitlab"
                              ? "a merge request event must have object_attributes.iid"
                              : "a pull_request event must have its \"number\"");
    pr.number = std::stoi(number);
    pr.ref = provider == "gitlab" ? fmt::format("refs/merge-requests/{}/head", pr.number)
                                  : fmt::format("refs/pull/{}/head", pr.number);
    if (pr.deploy && (pr.head.size() != 40 ||
                      pr.head.find_first_not_of("0123456789abcdef") != std::string::npos))
        return make_error(ErrorKind::bad_request, "the pull request's head is not a commit id");
    return pr;
}

std::string preview_ref(int number) {
    return fmt::format("refs/previews/{}", number);
}

std::optional<PreviewRow> find_preview(ApiContext& context, const std::string& app, int number) {
    for (auto& row : context.service.previews(app))
        if (row.number == number)
            return row;
    return std::nullopt;
}

// Destroys a preview's app and forgets it; a preview being deployed is marked closing (it is
// tried again at the next delivery or listing). Says what it did.
common::Result<std::string> remove_preview(ApiContext& context, PreviewRow row,
                                           const std::string& why) {
    auto destroyed = context.service.destroy_app(row.preview_app);
    if (!destroyed && destroyed.error().kind == ErrorKind::refused) {
        row.closing = true;
        row.detail = why + "; not removed yet: " + destroyed.error().message;
        TRY(context.service.put_preview(row));
        return make_error(ErrorKind::refused, row.detail);
    }
    if (!destroyed && destroyed.error().kind != ErrorKind::not_found)
        return destroyed.error();
    // A preview whose app never had a release is not an app to destroy: only its row.
    TRY(context.service.remove_preview(row.app, row.number));
    if (auto removed = git::remove_ref(context.data_dir.git_repo(row.app), preview_ref(row.number));
        !removed)
        common::log_warn(removed.error().message);
    common::log_info(fmt::format("{}: preview {} removed ({})", row.app, row.preview_app, why));
    return fmt::format("preview {} removed ({}){}", row.preview_app, why,
                       destroyed ? fmt::format(": {} releases", destroyed->releases.size()) : "");
}

// Previews closed while they were being deployed: removed now if they can be.
void sweep_closing(ApiContext& context, const std::string& app) {
    for (auto& row : context.service.previews(app))
        if (row.closing)
            (void)remove_preview(context, row, "its pull request was closed");
}

// The preview's variables: the app's, but for its secrets not listed in [preview] secrets
// and the names [preview.env] sets (deploy.toml's [env] yields to a variable set on the
// agent, so an override must not be one). Variables the preview has and should not go.
common::Status copy_env(ApiContext& context, const std::string& app, const std::string& preview,
                        const common::PreviewConfig& settings,
                        const std::map<std::string, std::string>& overrides) {
    std::vector<secrets::NewVar> wanted;
    for (const auto& var : context.service.env(app)) {
        if (overrides.count(var.name))
            continue;
        if (!var.secret) {
            wanted.push_back({var.name, var.value, false});
            continue;
        }
        if (std::find(settings.secrets.begin(), settings.secrets.end(), var.name) ==
            settings.secrets.end())
            continue;
        TRY_ASSIGN(auto value, context.service.secret_value(app, var.name));
        if (value)
            wanted.push_back({var.name, *value, true});
    }
    std::vector<std::string> stale;
    for (const auto& var : context.service.env(preview))
        if (std::none_of(wanted.begin(), wanted.end(),
                         [&](const secrets::NewVar& w) { return w.name == var.name; }))
            stale.push_back(var.name);
    if (!stale.empty())
        TRY(context.service.unset_env(preview, stale));
    if (!wanted.empty())
        TRY(context.service.set_env(preview, std::move(wanted)));
    return {};
}

// Past [preview] max, the oldest previews other than `keep` go; what was removed.
std::vector<std::string> make_room(ApiContext& context, const std::string& app, int keep, int max) {
    std::vector<std::string> notes;
    auto rows = context.service.previews(app); // oldest first
    auto open =
        std::count_if(rows.begin(), rows.end(), [](const PreviewRow& row) { return !row.closing; });
    for (const auto& row : rows) {
        if (open <= max)
            break;
        if (row.number == keep || row.closing)
            continue;
        auto removed = remove_preview(
            context, row, fmt::format("the oldest of more than [preview] max = {}", max));
        notes.push_back(removed ? *removed : removed.error().message);
        --open;
    }
    return notes;
}

HookOutcome ignored(std::string why) {
    return {200, "ignored", std::move(why), {{"deployed", false}}};
}

} // namespace

HookOutcome pull_request_delivery(ApiContext& context, const std::string& app,
                                  const std::string& provider, const json& body, DeliveryRow& row) {
    auto pr = read_pull_request(provider, body);
    if (!pr) {
        // An app without previews takes every pull-request event, whatever its shape.
        auto config = serving_config(context, app);
        if ((!config || !config->preview) && context.service.previews(app).empty())
            return ignored("previews are off: the serving release's deploy.toml has no "
                           "[preview]");
        return {400, "refused", pr.error().message};
    }
    row.ref = pr->ref;
    row.commit = pr->head;
    sweep_closing(context, app);
    if (pr->close) {
        auto preview = find_preview(context, app, pr->number);
        if (!preview)
            return ignored(fmt::format("pull request {} has no preview", pr->number));
        auto removed = remove_preview(
            context, *preview,
            fmt::format("pull request {} {}", pr->number, pr->merged ? "merged" : "closed"));
        if (!removed)
            return {removed.error().kind == ErrorKind::refused ? 202 : 500,
                    removed.error().kind == ErrorKind::refused ? "closing" : "failed",
                    removed.error().message};
        return {200, "removed", *removed, {{"preview", preview->preview_app}, {"removed", true}}};
    }
    if (!pr->deploy)
        return ignored(fmt::format("pull request action \"{}\" is not deployed", pr->action));
    auto config = serving_config(context, app);
    if (!config)
        return {409, "refused", config.error().message};
    if (!config->preview)
        return ignored("previews are off: the serving release's deploy.toml has no [preview]");
    const auto& settings = *config->preview;
    if (settings.max == 0)
        return ignored("previews are off: [preview] max = 0");
    if (pr->base != config->git.branch)
        return ignored(fmt::format("pull request {} is into {}, not the deploy branch ({})",
                                   pr->number, pr->base, config->git.branch));
    if (!pr->from.empty() && !settings.forks)
        return ignored(fmt::format("pull request {} comes from {}: [preview] forks = true "
                                   "deploys pull requests from other repositories",
                                   pr->number, pr->from));
    auto name = common::preview_app_name(app, pr->number);
    if (!name)
        return {409, "refused", name.error().message};
    if (!find_preview(context, app, pr->number) && context.service.status(*name))
        return {409, "refused",
                fmt::format("app {} exists and is not a preview of {}: its pull request {} is "
                            "not deployed over it",
                            *name, app, pr->number)};
    if (auto failed = fetch_for_hook(context, app, *config, pr->ref, preview_ref(pr->number)))
        return *failed;
    const auto repo = context.data_dir.git_repo(app);
    if (!git::has_commit(repo, pr->head))
        return {409, "failed",
                fmt::format("commit {} is not the head of {} in {}", pr->head, pr->ref,
                            config->git.url)};
    auto packaged = git::package_commit(repo, {}, pr->head);
    if (!packaged)
        return {500, "failed", packaged.error().message};
    auto own = common::parse_config((*packaged)->config_text, "deploy.toml");
    if (!own)
        return {422, "failed", "the pull request's " + own.error().message};
    auto text = common::preview_config_text((*packaged)->config_text, app, pr->number);
    if (!text)
        return {422, "failed", text.error().message};
    // The preview's tree holds its own deploy.toml, as any release's does.
    auto& commit = **packaged;
    const auto digest = common::sha256_hex(*text);
    for (auto& entry : commit.manifest.entries)
        if (entry.path == "deploy.toml") {
            entry.digest = digest;
            entry.size = text->size();
        }
    commit.read = [read = commit.read, digest,
                   text = *text](const std::string& wanted) -> common::Result<std::string> {
        return wanted == digest ? common::Result<std::string>(text) : read(wanted);
    };
    commit.config_text = std::move(*text);
    if (auto copied =
            copy_env(context, app, *name, settings,
                     own->preview ? own->preview->env : std::map<std::string, std::string>{});
        !copied)
        return {500, "failed", "cannot give the preview its variables: " + copied.error().message};

    PreviewRow preview;
    if (auto known = find_preview(context, app, pr->number))
        preview = *known;
    preview.app = app;
    preview.number = pr->number;
    preview.preview_app = *name;
    preview.provider = provider;
    preview.ref = pr->ref;
    preview.commit = pr->head;
    preview.closing = false;
    const auto audit = fmt::format("webhook {} {}: pull request {} {} as {}", provider,
                                   row.delivery, pr->number, pr->head.substr(0, 12), *name);
    auto outcome = deploy_for_hook(context, *name, **packaged, audit, row);
    preview.release = row.release;
    preview.detail = outcome.status >= 400 ? outcome.detail : "";
    if (auto recorded = context.service.put_preview(preview); !recorded)
        common::log_error("cannot record the preview: " + recorded.error().message);
    if (outcome.status >= 400)
        return outcome;
    auto notes = make_room(context, app, pr->number, settings.max);
    outcome.answer["preview"] = *name;
    outcome.answer["number"] = pr->number;
    if (auto status = context.service.status(*name))
        outcome.answer["url"] = status->url;
    if (!notes.empty()) {
        outcome.answer["removed"] = notes;
        outcome.detail = fmt::format("{}", fmt::join(notes, "; "));
    }
    return outcome;
}

namespace {

Response list_previews(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    sweep_closing(context, *app);
    json rows = json::array();
    for (const auto& row : context.service.previews(*app)) {
        json item = {{"number", row.number},      {"app", row.preview_app},
                     {"provider", row.provider},  {"ref", row.ref},
                     {"commit", row.commit},      {"release", row.release},
                     {"created", row.created_at}, {"updated", row.updated_at},
                     {"detail", row.detail},      {"url", nullptr},
                     {"domains", json::array()},  {"state", "closing"}};
        if (!row.closing) {
            item["state"] = "no release";
            if (auto status = context.service.status(row.preview_app)) {
                item["url"] = status->url;
                for (const auto& release : status->releases)
                    if (release.id == row.release)
                        item["state"] = std::string(common::to_string(release.state));
            }
            if (auto config = serving_config(context, row.preview_app))
                for (const auto& [target, settings] : config->targets)
                    for (const auto& domain : settings.domains)
                        item["domains"].push_back(domain);
        }
        rows.push_back(std::move(item));
    }
    return json_response(200, {{"app", *app}, {"previews", rows}});
}

} // namespace

void add_preview_routes(Router& router, ApiContext& context) {
    router.add("GET", "/v1/apps/{app}/previews",
               [&context](const Request& request) { return list_previews(context, request); });
}

} // namespace agent::api
