#pragma once
// The seam between the deployment engine (agent/deploy) and whatever builds
// and runs a release: plain processes, Docker or Podman. The engine only speaks
// to this interface; it never knows which one it drives.
//
// A running app is identified by a host pid and that process's start time
// (for a container: the pid of its init process), so liveness is a cheap
// /proc check whatever runs it.

#include <agent/runtime/app.hpp>
#include <agent/runtime/process.hpp>
#include <common/config.hpp>
#include <common/result.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace agent::runtime {

// A release, or with `process` one instance of one of its processes other
// than web ([processes]): empty names the release's web process.
struct ReleaseRef {
    ReleaseRef() = default;
    ReleaseRef(std::string app_, std::string id_, std::string process_ = {}, int instance_ = 0)
        : app(std::move(app_)), id(std::move(id_)), process(std::move(process_)),
          instance(instance_) {}
    std::string app;
    std::string id;
    std::string process;
    int instance = 0;
};

struct BuildSpec {
    ReleaseRef release;
    std::filesystem::path release_dir; // materialized source, the build's working tree
    const common::AppConfig* config = nullptr;
    // Variables set on the agent over config->env: plain ones and the secrets
    // deploy.toml lists in build.secrets (their names in `secrets`).
    std::map<std::string, std::string> env;
    std::vector<std::string> secrets;
    // The process engine: the app's $CACHE_DIR for this build (docs/build-cache.md).
    std::filesystem::path cache_dir;
    bool no_cache = false; // deploy --no-cache: an image build uses no layer of the cache
    std::function<void(std::string_view line)> on_line; // the build's own output
    std::function<void(std::string_view note)>
        on_note;                               // what the agent does ("building image ...")
    std::function<void(pid_t pid)> on_started; // the build's process group, for recovery
    const std::atomic<bool>* cancel = nullptr;
};

// A command run once in a release's environment, not routed (no $PORT): the
// release phase and `deployctl run`. It gets what the app gets: the release's
// directory or image, [env], the agent's variables and secrets, the memory
// limit, and $RELEASE.
struct OneOffSpec {
    ReleaseRef release;
    std::filesystem::path release_dir;
    const common::AppConfig* config = nullptr;
    std::map<std::string, std::string> env; // deployctl env: variables and secrets
    std::set<std::string> secret_names;
    std::vector<std::string> argv; // argv[0] is looked up on the command's PATH
    bool tty = false;              // it runs on a terminal the caller provides
    bool stdin_open = false;       // the caller feeds its stdin
    std::string term;              // $TERM, with tty
    std::string purpose = "run";   // "release" or "run": names a container
};

// How to start a one-off: spawn `spawn` (argv, complete environment, working
// directory; the caller sets the descriptors or terminal and the session).
// `cleanup` ends what may outlive the spawned process (a container) once it
// has exited or been killed; it may be empty and is safe to call twice.
struct OneOffPlan {
    SpawnSpec spawn;
    // With a terminal: make it raw (no echo, no line editing, no CR/LF
    // translation), for a program that has a terminal of its own inside
    // (docker run --tty).
    bool raw_terminal = false;
    std::function<void()> cleanup;
};

// An image the agent built (by its labels: this agent's, an app's), as
// `deployctl agent df` and `agent prune` see it.
struct StoredImage {
    std::string id; // the engine's image id
    std::string app;
    std::string release; // the release its tag names (deployctl/APP:vN-AGENT); "" untagged
    std::uint64_t bytes = 0;
    std::int64_t created = 0; // Unix time
};

class Runtime {
  public:
    virtual ~Runtime() = default;

    virtual std::string name() const = 0;
    // Builds the release in place (process) or into an image (containers).
    // An error is the final, user-facing reason ("build timed out after 2s").
    virtual common::Status build(const BuildSpec& spec) = 0;
    // What a build depends on besides the tree, its settings and its environment, for
    // the digest of its inputs (docs/build-cache.md): a container engine's base images
    // of the Dockerfile (their ids). An error: the build cannot be told equal to another.
    virtual common::Result<std::string> build_inputs(const BuildSpec& spec) {
        (void)spec;
        return std::string();
    }
    // The output of release `from`'s build made release `to`'s without building: a
    // container engine tags `from`'s image for `to`. The process engine's outputs are
    // directories the deployment engine copies itself (false: not done here).
    virtual common::Result<bool> reuse_build(const ReleaseRef& from, const ReleaseRef& to) {
        (void)from, (void)to;
        return false;
    }
    // Starts the app listening on launch.port and returns its identity.
    virtual common::Result<AppProcess> start(const AppLaunch& launch) = 0;
    // While a release starts: why it is no longer running ("container exceeded
    // memory limit 64m while starting"), nullopt while it runs.
    virtual std::optional<std::string> exited(const ReleaseRef& release,
                                              const AppProcess& process) = 0;
    virtual bool alive(const AppProcess& process) const = 0;
    // Stops the app (graceful, then forced after `grace`) and frees what it held.
    virtual void stop(const ReleaseRef& release, const AppProcess& process,
                      std::chrono::milliseconds grace) = 0;
    // The release became PRODUCTION: from now on it restarts when it crashes.
    virtual void serving(const ReleaseRef& release) { (void)release; }
    // A PRODUCTION app is not alive by pid. `running`: the engine restarted it
    // on its own (new identity, a note for the release's log); `pending`: the
    // engine is restarting it, look again later; `none`: the agent must start
    // it (the note may say why, e.g. "container was gone").
    struct Recovery {
        enum Kind { none, pending, running } kind = none;
        AppProcess process;
        std::string note;
    };
    virtual Recovery recover(const ReleaseRef& release, const std::filesystem::path& log_file) {
        (void)release, (void)log_file;
        return {};
    }
    // After an agent restart: the app runs and is ours again (e.g. reattach
    // its output to the release's log).
    virtual void adopt(const ReleaseRef& release, const AppProcess& process,
                       const std::filesystem::path& log_file) {
        (void)release, (void)process, (void)log_file;
    }
    // Releases this runtime holds anything for (containers), to find leftovers.
    virtual std::vector<ReleaseRef> instances() { return {}; }
    // After an agent restart: removes what one-offs of `purpose` ("release",
    // "run"; "" for both) left (a container whose CLI was killed); returns how many.
    virtual std::size_t remove_one_offs(const std::string& purpose) {
        (void)purpose;
        return 0;
    }
    // After an agent restart: removes the cgroups of the process engine that
    // nothing runs in any more (their releases stopped, failed or were
    // removed while the agent was down); returns how many.
    virtual std::size_t remove_leftover_groups() { return 0; }
    // The release is deleted: remove its image and anything else it held.
    virtual void remove(const ReleaseRef& release) { (void)release; }
    // Stops background work (log pumps); running apps keep running.
    virtual void shutdown() {}
    // How to run a one-off command of the release.
    virtual common::Result<OneOffPlan> one_off(const OneOffSpec& spec) = 0;
    // The container that runs it ("deployctl-APP-ID-AGENT"), empty for plain processes.
    virtual std::string container_name(const ReleaseRef& release) const {
        (void)release;
        return {};
    }
    // "20.10.24" for an engine, empty for plain processes.
    virtual std::string version() const { return {}; }
    // The images this agent built that the engine holds (tagged ones, and
    // untagged layers of builds that failed or were replaced); none for
    // plain processes. nullopt when the engine cannot say.
    virtual std::optional<std::vector<StoredImage>> images() { return std::vector<StoredImage>{}; }
    // Where the engine keeps its images (DockerRootDir, podman's graph root):
    // the disk an image build fills. Empty for plain processes, or when the
    // engine does not say.
    virtual std::filesystem::path storage_dir() { return {}; }
    // Removes one of the images; false (logged) when the engine refuses (in use).
    virtual bool remove_image(const StoredImage& image) {
        (void)image;
        return false;
    }
};

namespace cgroup {
class Cgroups;
}
// `cgroups` applies [run] and [build] limits (none when it has no controller).
std::unique_ptr<Runtime> make_process_runtime(std::shared_ptr<const cgroup::Cgroups> cgroups);

struct ContainerOptions {
    std::string engine = "docker"; // "docker" or "podman"
    std::string binary;            // the CLI; default: `engine` on PATH
    std::string network = "host";  // --network
    std::string agent_id;          // labels every image and container
    // The secret values to redact in a release's output when its container's
    // logs are followed again (recover, adopt).
    std::function<std::vector<std::string>(const ReleaseRef& release)> secret_values;
    // How a release's app log rotates (its deploy.toml's [logs]) when its container's logs
    // are followed again (recover, adopt); unset: [logs]' defaults.
    std::function<common::LogSettings(const ReleaseRef& release)> log_settings;
};

// Checks that the engine answers (`docker version`) and returns the runtime.
common::Result<std::unique_ptr<Runtime>> make_container_runtime(ContainerOptions options);

// Whether the engine answers within `timeout` (for --engine auto).
bool engine_answers(const std::string& binary, std::chrono::milliseconds timeout);

// A release runs in a container when deploy.toml names a Dockerfile or the
// tree has one at its root.
bool wants_container(const common::AppConfig& config, const std::filesystem::path& release_dir);

} // namespace agent::runtime
