#include <cli/package/deployed_config.hpp>
#include <cli/target.hpp>
#include <common/fingerprint.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <cstdlib>

namespace cli {

namespace {

using common::ErrorKind;
namespace fs = std::filesystem;

std::optional<std::string> env(const char* name) {
    const char* value = std::getenv(name);
    if (!value || !*value)
        return std::nullopt;
    return std::string(value);
}

common::Status parse_into(Target& target, std::string text, const std::string& source) {
    auto config = common::parse_config(text, source);
    if (!config)
        return config.error();
    target.config_text = std::move(text);
    target.config = std::move(*config);
    return {};
}

common::Status load_config(Target& target, const fs::path& dir, ConfigNeed need) {
    fs::path file = (dir / "deploy.toml").lexically_normal();
    std::error_code ec;
    if (!fs::exists(file, ec)) {
        if (need != ConfigNeed::required)
            return {};
        return package::no_deploy_toml(dir);
    }
    auto text = common::read_file(file);
    if (!text)
        return text.error();
    return parse_into(target, std::move(*text), file.string());
}

// "~/x" under $HOME; a relative path against deploy.toml's folder.
std::string resolve_ca_file(const std::string& path, const fs::path& dir) {
    if (path.starts_with("~/"))
        if (auto home = env("HOME"))
            return (fs::path(*home) / path.substr(2)).string();
    return (fs::absolute(dir) / path).lexically_normal().string();
}

common::Status check_readable(const std::string& path, ErrorKind kind, std::string_view what) {
    std::error_code ec;
    if (fs::is_regular_file(path, ec))
        return {};
    return common::make_error(kind, fmt::format("the CA file {} of {} {}", path, what,
                                                ec ? ec.message() : "is not a readable file"));
}

// How https:// agents are verified: --ca-file / --fingerprint, else the
// selected target's ca_file / fingerprint, else the system's CA store.
common::Result<transport::TlsOptions>
tls_options(const GlobalOptions& g, const common::TargetConfig* selected, const fs::path& dir) {
    transport::TlsOptions tls;
    if (!g.ca_file.empty() || !g.fingerprint.empty()) {
        if (!g.ca_file.empty() && !g.fingerprint.empty())
            return common::make_error(ErrorKind::usage,
                                      "--ca-file and --fingerprint exclude each other: a pinned "
                                      "fingerprint replaces the CA check; pass one");
        if (!g.fingerprint.empty()) {
            auto pin = common::parse_fingerprint(g.fingerprint);
            if (!pin)
                return common::make_error(ErrorKind::usage,
                                          "--fingerprint: " + pin.error().message);
            tls.fingerprint = std::move(*pin);
        }
        tls.ca_file = g.ca_file;
        tls.pinned_by = "--fingerprint";
        tls.hint = "pass --ca-file FILE (the CA that signed it) or --fingerprint SHA256 (the "
                   "agent's certificate, pinned)";
        if (!tls.ca_file.empty())
            if (auto ok = check_readable(tls.ca_file, ErrorKind::usage, "--ca-file"); !ok)
                return ok.error();
        return tls;
    }
    if (!selected) {
        tls.hint = "set ca_file or fingerprint for the target in deploy.toml (the CA that signed "
                   "the certificate, or the certificate's SHA-256 fingerprint, pinned), or pass "
                   "--ca-file / --fingerprint";
        return tls;
    }
    tls.fingerprint = selected->fingerprint;
    tls.pinned_by = fmt::format("deploy.toml (target {})", selected->name);
    tls.hint = fmt::format("set ca_file or fingerprint for target {} in deploy.toml (the CA "
                           "that signed the certificate, or the certificate's SHA-256 "
                           "fingerprint, pinned), or pass --ca-file / --fingerprint",
                           selected->name);
    if (!selected->ca_file.empty()) {
        tls.ca_file = resolve_ca_file(selected->ca_file, dir);
        if (auto ok = check_readable(tls.ca_file, ErrorKind::config,
                                     fmt::format("target {} in deploy.toml", selected->name));
            !ok)
            return ok.error();
    }
    return tls;
}

} // namespace

common::Result<transport::TlsOptions> command_line_tls(const GlobalOptions& g) {
    return tls_options(g, nullptr, ".");
}

common::Result<Target> resolve_target(const Context& ctx, const fs::path& dir, ConfigNeed need,
                                      const ConfigText* given) {
    Target target;
    const auto& g = ctx.global;
    if (auto st =
            given ? parse_into(target, given->text, given->source) : load_config(target, dir, need);
        !st)
        return st.error();
    target.app = !g.app.empty() ? g.app : target.config ? target.config->app : "";
    if (target.app.empty() && need != ConfigNeed::hosts_only)
        return common::make_error(ErrorKind::usage,
                                  "which app? there is no deploy.toml here: pass -a NAME, or run "
                                  "deployctl in the app's folder (or with -C DIR)");
    if (!target.app.empty() && !common::is_valid_app_name(target.app))
        return common::make_error(
            ErrorKind::usage,
            fmt::format("'{}' is not a valid app name: lower-case letters, digits and dashes, "
                        "starting with a letter",
                        target.app));
    HostSources sources{g.hosts, env("DEPLOYCTL_HOST"), target.config ? &*target.config : nullptr,
                        g.target};
    auto hosts = resolve_hosts(sources);
    if (!hosts)
        return hosts.error();
    target.hosts = std::move(*hosts);
    const auto* selected = selected_target(sources);
    if (selected)
        target.ssh =
            SshSettings{selected->agent_command, selected->identity_file, selected->agent_socket};
    auto tls = tls_options(g, selected, dir);
    if (!tls)
        return tls.error();
    target.tls = std::move(*tls);
    return target;
}

common::Result<std::vector<HostUrl>> host_urls(const Target& target) {
    std::vector<HostUrl> urls;
    for (const auto& host : target.hosts) {
        auto url = parse_host_url(host);
        if (!url)
            return url.error();
        if (auto st = check_transport(*url); !st)
            return st.error();
        urls.push_back(std::move(*url));
    }
    return urls;
}

common::Status for_each_host(Context& ctx, const Target& target, OnError on_error, const HostFn& fn,
                             std::map<std::string, common::Error>* errors) {
    auto parsed = host_urls(target);
    if (!parsed)
        return parsed.error();
    const auto& urls = *parsed;
    bool several = urls.size() > 1;
    ctx.out->set_several_hosts(several);
    common::Status first;
    for (const auto& url : urls) {
        auto client = ctx.connect(url, target.ssh, target.tls);
        auto st = client ? fn(**client, url.base_url) : common::Status(client.error());
        if (st)
            continue;
        if (errors)
            errors->emplace(url.base_url, st.error());
        if (several) {
            ctx.out->emit(output::Error{st.error(), url.base_url});
            ctx.error_reported = true;
        }
        if (first)
            first = st;
        if (on_error == OnError::stop)
            break;
    }
    return first;
}

common::Status check_release_id(const std::string& id) {
    bool ok = id.size() >= 2 && id.size() <= 20 && id[0] == 'v' &&
              id.find_first_not_of("0123456789", 1) == std::string::npos;
    if (ok)
        return {};
    return common::make_error(ErrorKind::usage,
                              fmt::format("'{}' is not a release id: expected v1, v2, ... "
                                          "(see deployctl releases)",
                                          id));
}

std::string app_path(const std::string& app) {
    return "/v1/apps/" + app;
}

} // namespace cli
