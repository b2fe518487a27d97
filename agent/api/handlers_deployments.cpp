#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/json.hpp>
#include <common/config.hpp>
#include <common/hash.hpp>
#include <common/manifest.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <set>
#include <unordered_map>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;
using nlohmann::json;

// A string member; absent or null reads as "" unless `required`.
common::Result<std::string> string_member(const json& body, const char* key, bool required) {
    if (!body.contains(key) || body[key].is_null()) {
        if (!required)
            return std::string();
        return make_error(ErrorKind::bad_request, fmt::format("missing \"{}\"", key));
    }
    if (!body[key].is_string())
        return make_error(ErrorKind::bad_request, fmt::format("\"{}\" must be a string", key));
    return body[key].get<std::string>();
}

common::Status read_meta(const json& body, NewDeployment& deployment) {
    auto commit = string_member(body, "commit", false);
    if (!commit)
        return commit.error();
    auto message = string_member(body, "message", false);
    if (!message)
        return message.error();
    for (const char* flag : {"dirty", "force", "release_command", "cron", "rebuild", "no_cache"})
        if (body.contains(flag) && !body[flag].is_boolean() && !body[flag].is_null())
            return make_error(ErrorKind::bad_request,
                              fmt::format("\"{}\" must be true or false", flag));
    auto flag = [&](const char* key) {
        return body.contains(key) && body[key].is_boolean() && body[key].get<bool>();
    };
    auto release = string_member(body, "release", false);
    if (!release)
        return release.error();
    if (!release->empty() && !is_release_id(*release))
        return make_error(ErrorKind::bad_request,
                          fmt::format("\"release\" must be a release id like \"v2\", not {}",
                                      describe_value(body["release"])));
    deployment.commit = std::move(*commit);
    deployment.message = std::move(*message);
    deployment.release = std::move(*release);
    deployment.dirty = flag("dirty");
    deployment.force = flag("force");
    deployment.rebuild = flag("rebuild");
    deployment.no_cache = flag("no_cache");
    // Absent or null: true (run deploy.toml's [release] command).
    deployment.release_command =
        !(body.contains("release_command") && body["release_command"].is_boolean() &&
          !body["release_command"].get<bool>());
    // deploy --canary PCT [--auto D] [--max-error-rate P] (absent or 0: a plain deploy).
    for (const char* key : {"canary", "canary_auto_seconds"})
        if (body.contains(key) && !body[key].is_null() &&
            (!body[key].is_number_integer() || body[key].get<std::int64_t>() < 0 ||
             (key == std::string_view("canary") && body[key].get<std::int64_t>() > 100)))
            return make_error(ErrorKind::bad_request, fmt::format("\"{}\" must be {}, not {}", key,
                                                                  key == std::string_view("canary")
                                                                      ? "a percentage from 0 to 100"
                                                                      : "a number of seconds",
                                                                  describe_value(body[key])));
    if (body.contains("canary") && body["canary"].is_number_integer())
        deployment.canary = body["canary"].get<int>();
    if (body.contains("canary_auto_seconds") && body["canary_auto_seconds"].is_number_integer())
        deployment.canary_auto = body["canary_auto_seconds"].get<std::int64_t>();
    if (body.contains("canary_max_error_rate") && !body["canary_max_error_rate"].is_null()) {
        const auto& rate = body["canary_max_error_rate"];
        if (!rate.is_number() || rate.get<double>() < 0 || rate.get<double>() > 100)
            return make_error(ErrorKind::bad_request,
                              "\"canary_max_error_rate\" must be percentage points, 0 to 100");
        deployment.canary_max_error_bp = static_cast<int>(rate.get<double>() * 100 + 0.5);
    }
    // Absent or null: true (this host runs the [[cron]] jobs).
    deployment.cron =
        !(body.contains("cron") && body["cron"].is_boolean() && !body["cron"].get<bool>());
    return {};
}

common::Status read_config(const json& body, const std::string& app, NewDeployment& deployment) {
    auto text = string_member(body, "config", true);
    if (!text)
        return text.error();
    auto config = common::parse_config(*text, "deploy.toml");
    if (!config)
        return config.error();
    if (config->app != app)
        return make_error(ErrorKind::config,
                          fmt::format("deploy.toml: app = \"{}\" but this deployment is for app "
                                      "\"{}\"",
                                      config->app, app));
    deployment.config_text = std::move(*text);
    deployment.config = std::move(*config);
    return {};
}

// A refused request: its error, and the code of the answer when it is not the kind's
// ("bad_path", "size_mismatch").
struct Refusal {
    common::Error error;
    std::string code;
};

Response refusal_response(const Refusal& refusal) {
    if (refusal.code.empty())
        return error_response(refusal.error);
    return error_response(http_status(refusal.error.kind), refusal.code, refusal.error.message);
}

// A tree a deployment names by its root: the root, and the digests of its nodes.
struct NamedTree {
    std::string root;
    std::shared_ptr<const TreeContents> contents;
    std::vector<std::string> nodes;
    std::map<std::string, std::string> unstored; // digest -> bytes
    bool complete = true;                        // `unstored` has each node not stored
};

// The tree: "manifest" (its files listed) or "tree" (the digest of its root node, whose
// nodes the agent has or was sent with POST /v1/trees/missing).
common::Result<common::Manifest> manifest_of(ApiContext& context, const json& body,
                                             NamedTree& named) {
    if (auto tree = body.find("tree"); tree != body.end()) {
        if (!tree->is_string())
            return make_error(ErrorKind::bad_request,
                              R"("tree" must be the sha256 digest of the tree's root node)");
        TRY_ASSIGN(auto contents,
                   read_tree(*context.pending_nodes, context.blobs, tree->get<std::string>()));
        context.blobs.pin(contents->nodes);
        named.root = tree->get<std::string>();
        named.contents = contents;
        named.nodes = contents->nodes;
        // The nodes not stored yet were sent (POST /v1/trees/missing) and are held until
        // stored; one let go since it was read: the agent builds the nodes again instead.
        // (`nodes` names each distinct node once.)
        for (const auto& digest : contents->nodes)
            if (!context.blobs.has(digest)) {
                auto node = context.pending_nodes->find(digest);
                if (!node) {
                    named.unstored.clear();
                    named.complete = false;
                    break;
                }
                named.unstored.emplace(digest, node->bytes);
            }
        context.pending_nodes->remember_tree(tree->get<std::string>(), contents->digest);
        return contents->manifest;
    }
    if (!body.contains("manifest") || !body["manifest"].is_object())
        return make_error(ErrorKind::bad_request,
                          R"(missing "manifest": {"files": [...]} (or "tree": "<root digest>"))");
    return common::manifest_from_json(body["manifest"]);
}

common::Status read_manifest(ApiContext& context, const json& body, NewDeployment& deployment,
                             std::string& code, NamedTree& named) {
    auto manifest = manifest_of(context, body, named);
    if (!manifest)
        return manifest.error();
    auto fault = common::ManifestFault::malformed;
    if (auto valid = common::validate_manifest(*manifest, &fault); !valid) {
        if (fault == common::ManifestFault::unstorable_path)
            code = "bad_path";
        return valid;
    }
    deployment.manifest = std::move(*manifest);
    if (named.complete) {
        deployment.tree_nodes = named.nodes;
        deployment.unstored_nodes = std::move(named.unstored);
    }
    return {};
}

// Each file's size is the stored blob's (one stat per blob, but for the blobs of `known`:
// sizes found stored since, with no blob removed): a declared size that differs refuses the
// manifest, an absent one is filled in. Nothing the agent records or counts (the tree
// digest, disk space) takes a client's number. The blobs the store lacks go to `missing`
// (each once), which the answer names before any size mismatch.
common::Status take_stored_sizes(const BlobStore& blobs, common::Manifest& manifest,
                                 std::vector<std::string>& missing,
                                 const std::unordered_map<std::string_view, std::uint64_t>& known) {
    // Each file's stored size: known already, or looked up with the others not known.
    std::vector<std::optional<std::uint64_t>> sizes(manifest.entries.size());
    std::vector<std::size_t> unknown_at;
    std::vector<std::string_view> unknown;
    for (std::size_t i = 0; i < manifest.entries.size(); ++i) {
        const auto& entry = manifest.entries[i];
        if (entry.kind == common::EntryKind::symlink)
            continue;
        if (auto it = known.find(entry.digest); it != known.end()) {
            sizes[i] = it->second;
        } else {
            unknown_at.push_back(i);
            unknown.push_back(entry.digest);
        }
    }
    const auto looked_up = blobs.stored_sizes(unknown);
    for (std::size_t k = 0; k < unknown_at.size(); ++k)
        sizes[unknown_at[k]] = looked_up[k];
    std::set<std::string> absent;
    common::Status mismatch;
    for (std::size_t i = 0; i < manifest.entries.size(); ++i) {
        auto& entry = manifest.entries[i];
        if (entry.kind == common::EntryKind::symlink)
            continue;
        const auto& stored = sizes[i];
        if (!stored) { // not there, or not a blob the store can read: sent again
            if (absent.insert(entry.digest).second)
                missing.push_back(entry.digest);
            continue;
        }
        if (entry.size_declared && entry.size != *stored && mismatch)
            mismatch = make_error(ErrorKind::bad_request,
                                  fmt::format("manifest entry \"{}\" declares {} bytes but its "
                                              "blob {} holds {} bytes: a file's size must be the "
                                              "size of the content its digest names",
                                              entry.path, entry.size, entry.digest, *stored));
        entry.size = *stored;
        entry.size_declared = true;
    }
    return mismatch;
}

// `named`: the tree's root and the digests of its nodes, when the deployment named one.
common::Result<NewDeployment> read_deployment(ApiContext& context, const json& body,
                                              const std::string& app, std::string& code,
                                              NamedTree& named) {
    NewDeployment deployment;
    deployment.app = app;
    if (auto ok = read_config(body, app, deployment); !ok)
        return ok.error();
    if (auto ok = read_manifest(context, body, deployment, code, named); !ok)
        return ok.error();
    if (auto ok = read_meta(body, deployment); !ok)
        return ok.error();
    return deployment;
}

// 409 release_taken: the id asked for is below the app's next one; the answer says which
// id is free now, for the client to ask again (docs/api.md). Another refusal of a
// deployment that asked for an id (a canary in progress) is answered as it is.
Response release_taken_response(ApiContext& context, const std::string& app,
                                const std::string& requested, const common::Error& error) {
    auto status = context.service.status(app);
    const auto asked = common::release_number(requested);
    const auto next = status ? common::release_number(status->next_release) : std::nullopt;
    if (!asked || !next || *asked >= *next)
        return error_response(error);
    auto body = json::parse(error_response(409, "release_taken", error.message).body);
    body["next_release"] = status->next_release;
    return json_response(409, body);
}

// The answer to a deployment of the very tree and deploy.toml the app's PRODUCTION
// release was made from (equal digests, computed as create_deployment records them):
// that release, "unchanged", and the app's URL; deploying them again would change
// nothing. Environment variables set since are not compared.
std::optional<json> serving_same(Service& service, const std::string& app,
                                 const std::string& tree_digest, const std::string& config_text) {
    auto status = service.status(app);
    // A stopped app is started again by a deploy, so that one is never a no-op.
    if (!status || !status->production || status->state == "stopped")
        return std::nullopt;
    const auto config_digest = common::sha256_hex(config_text);
    for (const auto& release : status->releases)
        if (release.id == *status->production && !release.tree_digest.empty() &&
            release.tree_digest == tree_digest && release.config_digest == config_digest) {
            auto answer = release_to_json(release);
            answer["release"] = release.id;
            answer["unchanged"] = true;
            answer["url"] = status->url;
            return answer;
        }
    return std::nullopt;
}

// A deployment that names, by its root, a tree read before whose manifest digest and
// deploy.toml are PRODUCTION's: "unchanged" at once, without reading the tree again.
std::optional<json> unchanged_tree(ApiContext& context, const json& body, const std::string& app) {
    auto force = body.find("force");
    auto tree = body.find("tree");
    auto config = body.find("config");
    if ((force != body.end() && (!force->is_boolean() || force->get<bool>())) ||
        tree == body.end() || !tree->is_string() || config == body.end() || !config->is_string())
        return std::nullopt;
    auto digest = context.pending_nodes->manifest_digest(tree->get<std::string>());
    if (!digest)
        return std::nullopt;
    return serving_same(context.service, app, *digest, config->get<std::string>());
}

Response create(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto body = parse_json_body(request, false);
    if (!body)
        return error_response(body.error());
    if (!body->is_object())
        return error_response(make_error(ErrorKind::bad_request, "expected a JSON object"));
    return create_deployment(context, *app, *body);
}

} // namespace

Response create_deployment(ApiContext& context, const std::string& app, const json& body) {
    if (auto unchanged = unchanged_tree(context, body, app))
        return json_response(200, *unchanged);
    std::string code;
    NamedTree named;
    auto deployment = read_deployment(context, body, app, code, named);
    // The tree's nodes were pinned while it was read; the release's blob list names them
    // once it is recorded (or nothing needs them).
    struct Unpin {
        BlobStore& blobs;
        const std::vector<std::string>& nodes;
        ~Unpin() { blobs.unpin(nodes); }
    } unpin_nodes{context.blobs, named.nodes};
    if (!deployment)
        return refusal_response({deployment.error(), code});
    // Pinned from here until the release that uses them is recorded (or an
    // hour): no collection removes them between this check and then.
    // A named tree's, as read (the contents stay alive with `named`).
    const auto digests_of =
        named.contents
            ? std::shared_ptr<const std::vector<std::string>>(named.contents,
                                                              &named.contents->blobs)
            : std::make_shared<const std::vector<std::string>>(deployment->manifest.blob_digests());
    const auto& digests = *digests_of;
    deployment->blob_digests = digests_of;
    context.blobs.pin(digests);
    const auto removals = context.blobs.removals(); // read after the pins
    std::vector<std::string> missing;
    // The blobs of the trees found whole with their sizes (the last deployments') are
    // not looked at one by one.
    const auto whole = context.pending_nodes->whole_blob_sizes(removals);
    auto sized = take_stored_sizes(context.blobs, deployment->manifest, missing, whole.sizes);
    if (!missing.empty())
        return missing_blobs_response(missing);
    // Every blob is here; once the nodes are stored too (with the release, or with the
    // PRODUCTION release of the same tree) the tree is whole: asking about it again
    // (the next deploy) reads nothing while no collection removes a blob.
    auto know_whole = [&] {
        if (!named.root.empty() && context.blobs.has_all(named.nodes))
            context.pending_nodes->mark_whole(named.root, removals, true);
    };
    if (!sized)
        return refusal_response(
            {sized.error(), sized.error().kind == ErrorKind::bad_request ? "size_mismatch" : ""});
    const std::string requested = deployment->release;
    // A named tree's sizes were its nodes' and are the stored ones (else refused above):
    // its digest is the one computed as it was read. A listed manifest's sizes may have
    // been filled in just now.
    deployment->tree_digest =
        named.contents ? named.contents->digest : deployment->manifest.digest();
    if (!deployment->force)
        if (auto unchanged = serving_same(context.service, app, deployment->tree_digest,
                                          deployment->config_text)) {
            context.blobs.unpin(digests); // PRODUCTION uses them
            know_whole();
            return json_response(200, *unchanged);
        }
    auto release = context.service.create_deployment(std::move(*deployment));
    if (!release) // this deploy is over: a collection may take what it uploaded
        context.blobs.unpin(digests);
    if (!release && !requested.empty() && release.error().kind == ErrorKind::refused)
        return release_taken_response(context, app, requested, release.error());
    if (!release)
        return error_response(release.error());
    know_whole();
    return json_response(201, {{"app", release->app},
                               {"release", release->id},
                               {"state", std::string(common::to_string(release->state))}});
}

void add_deployment_routes(Router& router, ApiContext& context) {
    router.add("POST", "/v1/apps/{app}/deployments",
               [&context](const Request& request) { return create(context, request); });
}

} // namespace agent::api
