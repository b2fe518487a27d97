#include <agent/git/deploy_key.hpp>
#include <agent/secrets/env_vars.hpp>
#include <common/env_name.hpp>
#include <common/hash.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace agent::secrets {

using common::ErrorKind;
using common::make_error;

namespace {

// A value must fit in an environment and say something to redact.
constexpr std::size_t k_max_value = 64 * 1024;

common::Status check_var(const NewVar& var) {
    TRY(common::check_env_name(var.name));
    if (var.value.find('\0') != std::string::npos)
        return make_error(ErrorKind::usage, "the value of " + var.name + " contains a NUL byte");
    if (var.value.size() > k_max_value)
        return make_error(ErrorKind::usage, "the value of " + var.name + " is longer than " +
                                                std::to_string(k_max_value) + " bytes");
    if (var.secret && var.value.size() < k_min_secret)
        return make_error(ErrorKind::usage,
                          "the secret value of " + var.name + " is shorter than " +
                              std::to_string(k_min_secret) +
                              " bytes: too short to be redacted from logs reliably (store it "
                              "without --secret if it is not a secret)");
    return {};
}

} // namespace

ReleaseEnv::~ReleaseEnv() {
    for (auto& [name, value] : build)
        wipe(value);
    for (auto& [name, value] : run)
        wipe(value);
    for (auto& value : secret_values)
        wipe(value);
}

std::shared_ptr<const Redactor> ReleaseEnv::redactor() const {
    return std::make_shared<const Redactor>(secret_values);
}

common::Status EnvVars::init() {
    return ensure_master_key(m_keys_dir, !m_store.has_data_keys());
}

std::vector<VarInfo> EnvVars::list(const std::string& app) {
    std::vector<VarInfo> vars;
    for (auto& row : m_store.env(app))
        vars.push_back(
            {row.name, row.secret, row.secret ? std::string() : row.value, row.updated_at});
    return vars;
}

common::Result<Key> EnvVars::data_key(const std::string& app,
                                      std::optional<std::string>& new_wrapped) {
    TRY_ASSIGN(const Key master, load_master_key(m_keys_dir));
    auto wrapped = m_store.data_key(app);
    if (!wrapped) {
        Key key = Key::random();
        TRY_ASSIGN(new_wrapped, seal(master, key.bytes(), data_key_aad(app)));
        return key;
    }
    auto bytes = open(master, *wrapped, data_key_aad(app));
    if (!bytes)
        return make_error(ErrorKind::failed,
                          "cannot decrypt the data key of app " + app + ": the master key " +
                              (m_keys_dir / "master.key").string() +
                              " is not the one its secrets were encrypted with (was it replaced "
                              "or damaged? restore it from your backup)");
    auto key = Key::from_bytes(*bytes);
    wipe(*bytes);
    return key;
}

common::Status EnvVars::set(const std::string& app, std::vector<NewVar> vars) {
    std::lock_guard lock(m_mutex);
    std::set<std::string> seen;
    for (const auto& var : vars) {
        TRY(check_var(var));
        if (!seen.insert(var.name).second)
            return make_error(ErrorKind::usage, var.name + " is given twice");
    }
    std::optional<std::string> new_wrapped;
    std::optional<Key> key;
    std::vector<EnvRow> rows;
    for (auto& var : vars) {
        EnvRow row{var.name, var.secret, {}, {}};
        if (!var.secret) {
            row.value = var.value;
        } else {
            if (!key) {
                TRY_ASSIGN(key, data_key(app, new_wrapped));
            }
            TRY_ASSIGN(row.value, seal(*key, var.value, secret_aad(app, var.name)));
        }
        wipe(var.value);
        rows.push_back(std::move(row));
    }
    return m_store.put_env(app, rows, new_wrapped);
}

common::Status EnvVars::unset(const std::string& app, const std::vector<std::string>& names) {
    std::lock_guard lock(m_mutex);
    for (const auto& name : names)
        TRY(common::check_env_name(name));
    return m_store.remove_env(app, names);
}

namespace {
std::string hook_aad(const std::string& app) {
    return "deployctl-hook-secret:" + app;
}
} // namespace

common::Result<std::string> EnvVars::make_hook_secret(const std::string& app, bool rotate) {
    std::lock_guard lock(m_mutex);
    if (!rotate)
        if (auto sealed = m_store.hook_secret(app)) {
            std::optional<std::string> none;
            TRY_ASSIGN(const Key key, data_key(app, none));
            return open(key, *sealed, hook_aad(app));
        }
    std::optional<std::string> new_wrapped;
    TRY_ASSIGN(const Key key, data_key(app, new_wrapped));
    TRY_ASSIGN(std::string secret, common::random_hex(32));
    TRY_ASSIGN(auto sealed, seal(key, secret, hook_aad(app)));
    TRY(m_store.put_hook_secret(app, sealed, new_wrapped));
    return secret;
}

namespace {
std::string git_key_aad(const std::string& app) {
    return "deployctl-git-key:" + app;
}
} // namespace

common::Result<std::optional<GitKeyRow>> EnvVars::git_key(const std::string& app, bool make,
                                                          bool rotate) {
    std::lock_guard lock(m_mutex);
    if (auto row = m_store.git_key(app); row && !rotate)
        return std::optional<GitKeyRow>(std::move(*row));
    if (!make && !rotate)
        return std::optional<GitKeyRow>();
    std::optional<std::string> new_wrapped;
    TRY_ASSIGN(const Key key, data_key(app, new_wrapped));
    TRY_ASSIGN(auto made, git::make_deploy_key(app));
    GitKeyRow row;
    TRY_ASSIGN(row.sealed, seal(key, made.private_pem, git_key_aad(app)));
    wipe(made.private_pem);
    row.public_key = made.public_line;
    TRY(m_store.put_git_key(app, row, new_wrapped));
    return m_store.git_key(app);
}

common::Result<std::optional<std::string>>
EnvVars::open_sealed(const std::string& app, const std::optional<std::string>& sealed,
                     const std::string& aad, const char* what) {
    if (!sealed)
        return std::optional<std::string>();
    std::optional<std::string> none;
    TRY_ASSIGN(const Key key, data_key(app, none));
    if (none)
        return make_error(ErrorKind::failed,
                          fmt::format("app {} has {} but no data key", app, what));
    auto value = open(key, *sealed, aad);
    if (!value)
        return make_error(ErrorKind::failed, fmt::format("cannot decrypt {} of {}: {}", what, app,
                                                         value.error().message));
    return std::optional<std::string>(std::move(*value));
}

common::Result<std::optional<std::string>> EnvVars::git_private_key(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto row = m_store.git_key(app);
    return open_sealed(app, row ? std::optional<std::string>(row->sealed) : std::nullopt,
                       git_key_aad(app), "a deploy key");
}

common::Result<std::optional<std::string>> EnvVars::hook_secret(const std::string& app) {
    std::lock_guard lock(m_mutex);
    return open_sealed(app, m_store.hook_secret(app), hook_aad(app), "a webhook secret");
}

common::Result<std::optional<std::string>> EnvVars::secret_value(const std::string& app,
                                                                 const std::string& name) {
    std::lock_guard lock(m_mutex);
    std::optional<Key> key;
    for (const auto& row : m_store.env(app))
        if (row.secret && row.name == name) {
            TRY_ASSIGN(auto value, decrypt(app, row, key));
            return std::optional<std::string>(std::move(value));
        }
    return std::optional<std::string>();
}

common::Result<std::string> EnvVars::decrypt(const std::string& app, const EnvRow& row,
                                             std::optional<Key>& key) {
    if (!key) {
        std::optional<std::string> none;
        auto loaded = data_key(app, none);
        if (!loaded)
            return loaded.error();
        if (none) // secrets without a data key: the database was tampered with
            return make_error(ErrorKind::failed, "app " + app + " has secrets but no data key");
        key = std::move(*loaded);
    }
    auto value = open(*key, row.value, secret_aad(app, row.name));
    if (!value)
        return make_error(ErrorKind::failed, "cannot decrypt secret " + row.name + " of " + app +
                                                 ": " + value.error().message);
    return value;
}

common::Result<ReleaseEnv> EnvVars::for_release(const std::string& app,
                                                const std::vector<std::string>& build_secrets) {
    auto rows = m_store.env(app);
    ReleaseEnv env;
    std::optional<Key> key;
    for (auto& row : rows) {
        if (!row.secret) {
            env.build[row.name] = env.run[row.name] = row.value;
            continue;
        }
        auto value = decrypt(app, row, key);
        if (!value)
            return value.error();
        env.secret_names.insert(row.name);
        env.secret_values.push_back(*value);
        env.run[row.name] = std::move(*value);
    }
    for (const auto& name : build_secrets) {
        if (!env.secret_names.count(name))
            return make_error(
                ErrorKind::failed,
                "deploy.toml [build] secrets lists " + name + ", which is not a secret of app " +
                    app + " on this agent (set it with `deployctl env set --secret " + name + "`)");
        env.build[name] = env.run[name];
        env.build_secrets.push_back(name);
    }
    return env;
}

common::Status EnvVars::remember(const std::string& app, const std::string& id) {
    return m_store.snapshot_secrets(app, id);
}

common::Result<std::vector<std::string>> EnvVars::secret_values(const std::string& app,
                                                                const std::string& id) {
    auto env = for_release(app, {});
    if (!env)
        return env.error();
    std::vector<std::string> values = std::move(env->secret_values);
    std::optional<Key> key;
    for (const auto& row : m_store.release_secrets(app, id)) {
        auto value = decrypt(app, row, key);
        if (!value)
            return value.error();
        values.push_back(std::move(*value));
    }
    return values;
}

} // namespace agent::secrets
