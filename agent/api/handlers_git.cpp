// `git push` to the agent (docs/git.md). Two routes, on the unix socket only:
//
// POST /v1/apps/{app}/git/receive: `deploy-agent git-receive`, the forced command of an
//   SSH key, asks for it. Answered 101: the connection then carries the frames of
//   common/run_frames.hpp between the pusher's git and a `git receive-pack` of the app's
//   bare repository, which runs DATA/git/hooks/pre-receive before it moves any branch.
// POST /v1/apps/{app}/git/pre-receive: that hook (`deploy-agent git-hook pre-receive`,
//   the agent's own user) asks for the deploy of the pushed commit, from the objects git
//   keeps in quarantine until the hook says yes. The answer streams the release's events;
//   the hook prints them (the pusher sees them as "remote:" lines) and exits non-zero
//   unless the release went live, so a failed deploy rejects the push.
#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/json.hpp>
#include <agent/api/run_session.hpp>
#include <agent/git/repository.hpp>
#include <agent/runtime/one_off.hpp>
#include <common/config.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>
#include <common/run_frames.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>
#include <unistd.h>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;
using nlohmann::json;
namespace fs = std::filesystem;

// Blobs written to temporary files before they are made durable and renamed at once.
constexpr std::size_t k_blob_batch = 1024;

// The git program: git receive-pack does the protocol.
std::optional<fs::path> find_git() {
    for (const char* dir : {"/usr/local/bin", "/usr/bin", "/bin"}) {
        const fs::path candidate = fs::path(dir) / "git";
        if (::access(candidate.c_str(), X_OK) == 0)
            return candidate;
    }
    return std::nullopt;
}

// The most a push may bring (git's receive.maxInputSize): what the disk has free above
// the agent's reserve (--min-free); 0 = no limit (free space unknown).
std::uint64_t push_size_limit(const DiskGuard& disk, const fs::path& dir) {
    auto space = disk_space(dir);
    if (!space)
        return 0;
    const std::uint64_t reserve = disk.min_free().reserve(space->size);
    return space->free > reserve + 1 ? space->free - reserve : 1;
}

Response receive(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    if (!request.peer.unix_socket)
        return error_response(403, "forbidden",
                              "git push goes over SSH (deploy-agent git-receive, docs/git.md), not "
                              "over the TCP API");
    if (request.upgrade != git::k_receive_upgrade)
        return error_response(
            400, "bad_request",
            fmt::format("POST /v1/apps/{}/git/receive needs the header \"Upgrade: "
                        "{}\" (deploy-agent git-receive sends it)",
                        *app, git::k_receive_upgrade));
    auto body = parse_json_body(request, true);
    if (!body)
        return error_response(body.error());
    std::string key;
    if (auto it = body->find("key"); it != body->end() && !it->is_null()) {
        if (!it->is_string() || it->get<std::string>().size() > 64)
            return error_response(400, "bad_request", "\"key\" must be the name of an SSH key");
        key = it->get<std::string>();
    }
    if (!context.pushes || context.socket.empty())
        return error_response(503, "unavailable", "this agent serves no unix socket for git hooks");
    const auto git = find_git();
    if (!git)
        return error_response(
            503, "git_missing",
            "git is not installed on this server: git push needs its receive-pack "
            "(apt-get install git)");
    const auto repo = context.data_dir.git_repo(*app);
    if (auto made = git::ensure_repository(repo); !made)
        return error_response(made.error());
    auto begun = context.pushes->begin({*app, key, request.peer.user});
    if (!begun)
        return error_response(begun.error());
    const std::string push = std::move(*begun);
    runtime::OneOffPlan plan;
    plan.spawn.argv = {git->string(), "-c",
                       "core.hooksPath=" + context.data_dir.git_hooks().string()};
    if (const auto limit = push_size_limit(context.disk, repo); limit > 0)
        plan.spawn.argv.insert(plan.spawn.argv.end(),
                               {"-c", "receive.maxInputSize=" + std::to_string(limit)});
    plan.spawn.argv.insert(plan.spawn.argv.end(), {"receive-pack", repo.string()});
    // Only what git and the hook need: no configuration of the agent's user is read.
    plan.spawn.env = {"PATH=/usr/local/bin:/usr/bin:/bin",
                      "HOME=" + repo.parent_path().string(),
                      "GIT_CONFIG_NOSYSTEM=1",
                      "LANG=C.UTF-8",
                      std::string(git::k_push_env) + "=" + push,
                      std::string(git::k_app_env) + "=" + *app,
                      std::string(git::k_socket_env) + "=" + context.socket.string()};
    plan.spawn.cwd = repo;
    Response response;
    response.status = 101;
    response.upgrade_protocol = std::string(git::k_receive_upgrade);
    response.audit_detail = key.empty() ? "git push" : "git push with key " + key;
    const std::string label =
        fmt::format("git push to {} ({})", *app, key.empty() ? request.peer.user : "key " + key);
    response.upgrade = [plan = std::move(plan), label, push,
                        pushes = context.pushes](Duplex& client) {
        common::log_info(label + ": started");
        runtime::OneOffIo io;
        io.stdin_open = true;
        auto command = runtime::start_one_off(plan, io);
        if (!command) {
            json status = {{"status", 127}, {"error", command.error().message}};
            client.write(common::run::encode_frame(common::run::Frame::exit, status.dump()));
        } else {
            relay_frames(client, *command, label);
            command->end(k_end_grace);
        }
        pushes->end(push);
        common::log_info(label + ": ended");
    };
    return response;
}

// --- the pre-receive hook's request -----------------------------------------------------

struct RefUpdate {
    std::string old_id, new_id, ref;
};

common::Result<std::vector<RefUpdate>> read_refs(const json& body) {
    auto refs = body.find("refs");
    if (refs == body.end() || !refs->is_array() || refs->size() > 10000)
        return make_error(ErrorKind::bad_request, R"("refs" must be the hook's ref updates)");
    std::vector<RefUpdate> out;
    for (const auto& ref : *refs) {
        if (!ref.is_object() || !ref.value("old", json()).is_string() ||
            !ref.value("new", json()).is_string() || !ref.value("ref", json()).is_string())
            return make_error(ErrorKind::bad_request,
                              R"(each ref update must be {"old", "new", "ref"})");
        RefUpdate update{ref["old"], ref["new"], ref["ref"]};
        for (const auto* id : {&update.old_id, &update.new_id})
            if (id->size() != 40 || id->find_first_not_of("0123456789abcdef") != std::string::npos)
                return make_error(ErrorKind::bad_request,
                                  fmt::format("{} is not a git object id", describe_value(*id)));
        out.push_back(std::move(update));
    }
    return out;
}

std::int64_t ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start)
        .count();
}

// Stores the files of the commit the blob store lacks: written to temporary files, then
// made durable and renamed in batches (BlobStore::adopt_verified). They are pinned, and
// stay so until `pinned` is unpinned.
common::Result<std::size_t> store_files(ApiContext& context, const git::PackagedCommit& packaged,
                                        const std::vector<std::string>& pinned) {
    context.blobs.pin(pinned);
    std::vector<std::string> missing;
    std::set<std::string_view> seen;
    std::uint64_t bytes = 0;
    for (const auto& entry : packaged.manifest.entries)
        if (entry.kind != common::EntryKind::symlink && seen.insert(entry.digest).second &&
            !context.blobs.has(entry.digest)) {
            missing.push_back(entry.digest);
            bytes += entry.size;
        }
    TRY(context.disk.check(bytes, "this push"));
    std::vector<BlobStore::Written> written;
    for (std::size_t i = 0; i < missing.size(); ++i) {
        TRY_ASSIGN(auto data, packaged.read(missing[i]));
        TRY_ASSIGN(auto temp, context.blobs.write_temp(missing[i], data));
        written.push_back(std::move(temp));
        if (written.size() == k_blob_batch || i + 1 == missing.size()) {
            TRY(context.blobs.adopt_verified(written));
            written.clear();
        }
    }
    return missing.size();
}

} // namespace

common::Result<common::AppConfig> serving_config(ApiContext& context, const std::string& app) {
    auto status = context.service.status(app);
    if (!status || !status->production)
        return make_error(ErrorKind::refused,
                          fmt::format("{} serves no release: deploy it once by hand first "
                                      "(deployctl deploy), with [git] url in its deploy.toml",
                                      app));
    return common::load_config(context.data_dir.release_dir(app, *status->production) /
                               "deploy.toml");
}

Response deploy_commit(ApiContext& context, const std::string& app,
                       const git::PackagedCommit& packaged, const std::string& audit_detail) {
    const auto digests = packaged.manifest.blob_digests();
    struct Unpin {
        BlobStore& blobs;
        const std::vector<std::string>& digests;
        ~Unpin() { blobs.unpin(digests); }
    } unpin{context.blobs, digests};
    const auto storing = std::chrono::steady_clock::now();
    auto stored = store_files(context, packaged, digests);
    if (!stored)
        return error_response(stored.error());
    common::log_info(fmt::format("{}: {}: {} new files of {} stored in {} ms", app, audit_detail,
                                 *stored, packaged.manifest.entries.size(), ms_since(storing)));
    const json deployment = {{"config", packaged.config_text},
                             {"manifest", common::manifest_to_json(packaged.manifest)},
                             {"commit", packaged.commit},
                             {"message", packaged.message}};
    auto created = create_deployment(context, app, deployment);
    created.audit_detail = audit_detail;
    return created;
}

namespace {

// What the hook prints before the deploy's events (refs kept and not deployed).
json notes_line(const std::vector<std::string>& notes) {
    return {{"event", "push"}, {"notes", notes}};
}

Response with_notes(Response response, const std::vector<std::string>& notes) {
    auto body = json::parse(response.body, nullptr, false);
    if (body.is_object()) {
        body["notes"] = notes;
        auto status = response.status;
        response = json_response(status, body);
    }
    return response;
}

Response pre_receive(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    if (!request.peer.unix_socket || request.peer.uid != static_cast<long>(::geteuid()))
        return error_response(
            403, "forbidden",
            "only the agent's own pre-receive hook asks for the deploy of a push");
    auto body = parse_json_body(request, false);
    if (!body)
        return error_response(body.error());
    if (!body->is_object() || !body->value("push", json()).is_string())
        return error_response(400, "bad_request", R"(expected {"push": ID, "refs": [...]})");
    const auto push = context.pushes ? context.pushes->find((*body)["push"]) : std::nullopt;
    if (!push || push->app != *app)
        return error_response(404, "not_found",
                              "no push to " + *app + " is in progress with that id");
    auto refs = read_refs(*body);
    if (!refs)
        return error_response(refs.error());
    const auto started = std::chrono::steady_clock::now();
    const auto repo = context.data_dir.git_repo(*app);
    fs::path quarantine;
    if (auto q = body->find("quarantine");
        q != body->end() && q->is_string() && !q->get<std::string>().empty()) {
        quarantine = fs::weakly_canonical(q->get<std::string>());
        const auto objects = fs::weakly_canonical(repo / "objects");
        const auto rel = quarantine.lexically_relative(objects);
        if (rel.empty() || rel.native().rfind("..", 0) == 0)
            return error_response(400, "bad_request",
                                  "the quarantine is not inside the app's repository");
    }

    // Which ref deploys: a branch named by the serving release's [git] branch (main while
    // none serves), or by the pushed commit's own deploy.toml.
    std::optional<std::string> serving;
    if (auto config = serving_config(context, *app))
        serving = config->git.branch;
    std::vector<std::string> notes;
    const RefUpdate* deploy = nullptr;
    std::shared_ptr<git::PackagedCommit> packaged;
    for (const auto& ref : *refs) {
        if (ref.ref.rfind("refs/heads/", 0) != 0) {
            notes.push_back(fmt::format("{}: kept, not deployed (only a branch deploys)", ref.ref));
            continue;
        }
        const std::string branch = ref.ref.substr(11);
        if (ref.new_id == git::k_zero_oid) {
            notes.push_back(fmt::format("branch {} deleted here; nothing deployed", branch));
            continue;
        }
        auto commit = git::package_commit(repo, quarantine, ref.new_id);
        if (!commit)
            return with_notes(error_response(commit.error()), notes);
        std::optional<std::string> named; // the pushed deploy.toml's branch, when it parses
        common::Result<common::AppConfig> config =
            make_error(ErrorKind::config,
                       fmt::format("commit {} has no deploy.toml at its root (deployctl init "
                                   "writes one)",
                                   ref.new_id.substr(0, 12)));
        if (!(*commit)->config_text.empty())
            config = common::parse_config((*commit)->config_text, "deploy.toml");
        if (config)
            named = config->git.branch;
        const bool deploys = branch == serving.value_or("main") || (named && branch == *named);
        if (!deploys) {
            notes.push_back(fmt::format("branch {}: kept, not deployed (the deploy branch is {})",
                                        branch, named.value_or(serving.value_or("main"))));
            continue;
        }
        if (!config)
            return with_notes(error_response(config.error()), notes);
        if (deploy) {
            notes.push_back(fmt::format("branch {}: kept, not deployed (this push deploys {})",
                                        branch, deploy->ref.substr(11)));
            continue;
        }
        deploy = &ref;
        packaged = std::move(*commit);
    }
    if (!deploy) {
        Response nothing = json_response(200, {{"deployed", false}, {"notes", notes}});
        nothing.audit_detail = "git push: nothing to deploy";
        return nothing;
    }
    for (const auto& warning : packaged->warnings)
        notes.push_back(warning);

    common::log_info(fmt::format("git push to {}: {} {} packaged ({} files) in {} ms", *app,
                                 deploy->ref.substr(11), packaged->commit.substr(0, 12),
                                 packaged->manifest.entries.size(), ms_since(started)));
    const std::string detail =
        fmt::format("git push{}: {} {}", push->key.empty() ? "" : " with key " + push->key,
                    deploy->ref.substr(11), packaged->commit.substr(0, 12));
    auto created = deploy_commit(context, *app, *packaged, detail);
    if (created.status != 201)
        return with_notes(std::move(created), notes);
    const auto answer = json::parse(created.body, nullptr, false);
    const std::string release = answer.value("release", "");
    Response response;
    response.content_type = "application/x-ndjson";
    response.body = created.body; // for the audit log (the release); not sent
    response.audit_detail = detail;
    response.stream = [&context, app = *app, release, notes](StreamSink& sink) {
        if (!sink.write(to_line(notes_line(notes))))
            return;
        stream_events(context, app, release, true, sink);
    };
    return response;
}

} // namespace

void add_git_routes(Router& router, ApiContext& context) {
    router.add(
        "POST", "/v1/apps/{app}/git/receive",
        [&context](const Request& request) { return receive(context, request); },
        BodyKind::small_json, Access::admin);
    router.add(
        "POST", "/v1/apps/{app}/git/pre-receive",
        [&context](const Request& request) { return pre_receive(context, request); },
        BodyKind::json, Access::admin);
}

} // namespace agent::api
