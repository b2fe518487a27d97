#pragma once
// The variables `deployctl env set` stores per app (docs/security.md
// "Secrets"): plain ones in clear, secret ones sealed with the app's data key
// (envelope.hpp), and what a release's build and app get from them.
//
// Precedence: a variable set on the agent wins over deploy.toml [env] of the
// same name. Values are read when a release starts (deploy, rollback,
// restart), so a change takes effect when the app next starts (deployctl
// restart, deploy --force or a rollback).

#include <agent/secrets/envelope.hpp>
#include <agent/secrets/redact.hpp>
#include <agent/secrets/vars.hpp>
#include <agent/store/store.hpp>
#include <common/config.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace agent::secrets {

// What a release is started with, decrypted; wiped when destroyed.
struct ReleaseEnv {
    std::map<std::string, std::string> build; // over [env]: agent plain vars, listed secrets
    std::vector<std::string> build_secrets;   // names of the secrets in `build`
    std::map<std::string, std::string> run;   // over [env]: every agent var
    std::set<std::string> secret_names;       // which of `run` are secrets
    std::vector<std::string> secret_values;   // every secret of the app, to redact
    ReleaseEnv() = default;
    ReleaseEnv(const ReleaseEnv&) = delete;
    ReleaseEnv& operator=(const ReleaseEnv&) = delete;
    ReleaseEnv(ReleaseEnv&&) = default;
    ~ReleaseEnv();
    std::shared_ptr<const Redactor> redactor() const;
};

class EnvVars {
  public:
    EnvVars(Store& store, std::filesystem::path keys_dir)
        : m_store(store), m_keys_dir(std::move(keys_dir)) {}

    // Creates the master key on first start; a missing key while secrets
    // exist is an error (never a silent new key).
    common::Status init();

    std::vector<VarInfo> list(const std::string& app);
    // All or nothing: every name and value is checked before anything is stored.
    common::Status set(const std::string& app, std::vector<NewVar> vars);
    common::Status unset(const std::string& app, const std::vector<std::string>& names);

    // The environment of a release whose build may see `build_secrets`
    // (deploy.toml [build] secrets; empty to start an app). ErrorKind::failed
    // when one of them is not a secret of the app, or a secret cannot be
    // decrypted.
    common::Result<ReleaseEnv> for_release(const std::string& app,
                                           const std::vector<std::string>& build_secrets);
    // Keeps a copy of the app's sealed secrets as release `id` starts with
    // them, so its output stays redacted after they are replaced or unset.
    common::Status remember(const std::string& app, const std::string& id);
    // The values to redact in the output of release `id`: the app's secrets
    // now and those the release started with (remember()).
    common::Result<std::vector<std::string>> secret_values(const std::string& app,
                                                           const std::string& id);

    // The app's webhook secret (docs/git.md), sealed with its data key like a secret:
    // made (32 random bytes, hex) when it has none or `rotate`; nullopt from read when none.
    common::Result<std::string> make_hook_secret(const std::string& app, bool rotate);
    common::Result<std::optional<std::string>> hook_secret(const std::string& app);
    // The app's deploy key (docs/git.md), its private half sealed with its data key: made
    // (agent/git/deploy_key.hpp) when it has none and `make`, or anew with `rotate`; nullopt
    // when it has none and not `make`. git_private_key: the private half (PEM), for a fetch.
    common::Result<std::optional<GitKeyRow>> git_key(const std::string& app, bool make,
                                                     bool rotate);
    common::Result<std::optional<std::string>> git_private_key(const std::string& app);
    // The value of the app's secret `name` (deploy.toml [git] token names one); nullopt when
    // the app has no secret of that name.
    common::Result<std::optional<std::string>> secret_value(const std::string& app,
                                                            const std::string& name);

  private:
    common::Result<Key> data_key(const std::string& app, std::optional<std::string>& new_wrapped);
    // A value sealed with the app's data key under `aad` (nullopt: none); `what` names it in
    // errors ("a webhook secret"). Called with m_mutex held.
    common::Result<std::optional<std::string>> open_sealed(const std::string& app,
                                                           const std::optional<std::string>& sealed,
                                                           const std::string& aad,
                                                           const char* what);
    // A sealed row's value; loads the app's data key into `key` on first use.
    common::Result<std::string> decrypt(const std::string& app, const EnvRow& row,
                                        std::optional<Key>& key);

    Store& m_store;
    std::filesystem::path m_keys_dir;
    std::mutex m_mutex; // one writer at a time: a new app's data key is made once
};

} // namespace agent::secrets
