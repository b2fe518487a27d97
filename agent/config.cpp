#include <agent/config.hpp>
#include <agent/runtime/ports.hpp>
#include <agent/store/disk.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/toml_reader.hpp>

#include <fmt/format.h>

namespace agent {

namespace {

using common::Reader;
using common::Status;

Status read_string(const Reader& r, const toml::table& t, std::string_view key,
                   std::string_view name, std::optional<std::string>& out) {
    if (const auto* n = t.get(key)) {
        TRY_ASSIGN(out, r.string_at(*n, name));
    }
    return {};
}

// A PEM file's path from `key` of `t`, relative to base_dir; "" when absent.
common::Result<std::string> read_pem_path(const Reader& r, const toml::table& t,
                                          std::string_view key, const std::string& name,
                                          const std::filesystem::path& base_dir) {
    const auto* n = t.get(key);
    if (n == nullptr)
        return std::string();
    TRY_ASSIGN(std::string path, r.string_at(*n, name));
    if (path.empty())
        return r.error_at(n->source(), fmt::format("{} must name a file", name));
    return (base_dir / path).lexically_normal().string(); // an absolute path stays
}

Status read_certificate(const Reader& r, const toml::node& node,
                        const std::filesystem::path& base_dir, AgentConfig& out) {
    TRY_ASSIGN(const toml::table* t, r.table_at(node, "every [[proxy.certificates]] entry"));
    TRY(r.check_keys(*t, "[[proxy.certificates]]", {"cert", "key"}));
    proxy::CertificateFiles files;
    for (auto [key, target] : {std::pair{"cert", &files.cert}, std::pair{"key", &files.key}}) {
        if (t->get(key) == nullptr)
            return r.error_at(node.source(),
                              fmt::format("[[proxy.certificates]] needs '{}' (a PEM file)", key));
        TRY_ASSIGN(*target,
                   read_pem_path(r, *t, key, fmt::format("proxy.certificates.{}", key), base_dir));
    }
    out.certificates.push_back(std::move(files));
    return {};
}

// tls_cert and tls_key: the API serves HTTPS with them.
Status read_api_tls(const Reader& r, const toml::table& root, const std::filesystem::path& base_dir,
                    AgentConfig& out) {
    proxy::CertificateFiles files;
    TRY_ASSIGN(files.cert, read_pem_path(r, root, "tls_cert", "tls_cert", base_dir));
    TRY_ASSIGN(files.key, read_pem_path(r, root, "tls_key", "tls_key", base_dir));
    if (files.cert.empty() != files.key.empty()) {
        const bool has_cert = !files.cert.empty();
        return r.error_at(root.get(has_cert ? "tls_cert" : "tls_key")->source(),
                          has_cert ? "tls_cert needs tls_key (the certificate's private key, PEM)"
                                   : "tls_key needs tls_cert (the certificate, PEM)");
    }
    if (!files.cert.empty())
        out.tls = std::move(files);
    return {};
}

Status read_proxy(const Reader& r, const toml::table& t, const std::filesystem::path& base_dir,
                  AgentConfig& out) {
    TRY(r.check_keys(t, "[proxy]",
                     {"listen", "https_listen", "redirect_https", "certificates", "access_log",
                      "access_log_max_size"}));
    TRY(read_string(r, t, "listen", "proxy.listen", out.proxy_listen));
    TRY(read_string(r, t, "https_listen", "proxy.https_listen", out.proxy_https_listen));
    if (const auto* n = t.get("redirect_https")) {
        TRY_ASSIGN(out.redirect_https, r.boolean_at(*n, "proxy.redirect_https"));
    }
    if (const auto* n = t.get("access_log")) {
        TRY_ASSIGN(out.access_log, r.boolean_at(*n, "proxy.access_log"));
    }
    if (const auto* n = t.get("access_log_max_size")) {
        TRY_ASSIGN(out.access_log_max_size, r.size_at(*n, "proxy.access_log_max_size"));
    }
    if (const auto* n = t.get("certificates")) {
        const auto* array = n->as_array();
        if (array == nullptr)
            return r.error_at(n->source(), "proxy.certificates must be an array of tables: "
                                           "[[proxy.certificates]] with cert and key");
        for (const auto& item : *array)
            TRY(read_certificate(r, item, base_dir, out));
    }
    return {};
}

Status read_acme(const Reader& r, const toml::table& t, const std::filesystem::path& base_dir,
                 AgentConfig& out) {
    TRY(r.check_keys(t, "[acme]",
                     {"directory", "ca_file", "email", "eab_kid", "eab_hmac_key", "challenges",
                      "dns_hook", "on_demand", "ask", "retry"}));
    AgentConfig::Acme acme;
    for (auto [key, target] :
         {std::pair{"directory", &acme.directory}, std::pair{"email", &acme.email},
          std::pair{"eab_kid", &acme.eab_kid}, std::pair{"eab_hmac_key", &acme.eab_hmac_key},
          std::pair{"dns_hook", &acme.dns_hook}, std::pair{"ask", &acme.ask}}) {
        TRY(read_string(r, t, key, fmt::format("acme.{}", key), *target));
    }
    if (acme.directory && acme.directory->rfind("https://", 0) != 0)
        return r.error_at(t.get("directory")->source(),
                          "acme.directory must be an https:// URL (the CA's directory)");
    if (acme.ask && acme.ask->rfind("http://", 0) != 0 && acme.ask->rfind("https://", 0) != 0)
        return r.error_at(t.get("ask")->source(), "acme.ask must be an http:// or https:// URL");
    if (acme.eab_kid.has_value() != acme.eab_hmac_key.has_value())
        return r.error_at((acme.eab_kid ? t.get("eab_kid") : t.get("eab_hmac_key"))->source(),
                          "acme.eab_kid and acme.eab_hmac_key go together");
    if (const auto* n = t.get("ca_file")) {
        TRY_ASSIGN(std::string path, read_pem_path(r, t, "ca_file", "acme.ca_file", base_dir));
        (void)n;
        acme.ca_file = path;
    }
    if (const auto* n = t.get("challenges")) {
        TRY_ASSIGN(auto list, r.strings_at(*n, "acme.challenges"));
        if (list.empty())
            return r.error_at(n->source(), "acme.challenges needs at least one challenge");
        for (const auto& item : list)
            if (item != "http-01" && item != "tls-alpn-01" && item != "dns-01")
                return r.error_at(n->source(), "acme.challenges: unknown challenge '" + item +
                                                   "' (expected http-01, tls-alpn-01, dns-01)");
        acme.challenges = std::move(list);
    }
    if (const auto* n = t.get("on_demand")) {
        TRY_ASSIGN(acme.on_demand, r.boolean_at(*n, "acme.on_demand"));
    }
    if (acme.on_demand.value_or(false) && !acme.ask)
        return r.error_at(t.get("on_demand")->source(),
                          "acme.on_demand = true needs acme.ask, the URL that allows a name "
                          "(GET ASK?domain=NAME answering 200): without it anyone could make "
                          "this server ask for certificates for any name");
    if (const auto* n = t.get("retry")) {
        TRY_ASSIGN(acme.retry, r.duration_at(*n, "acme.retry"));
        if (acme.retry->count() < 1000)
            return r.error_at(n->source(), "acme.retry must be at least 1s");
    }
    out.acme = std::move(acme);
    return {};
}

} // namespace

common::Result<AgentConfig> parse_agent_config(std::string_view text, std::string_view source,
                                               const std::filesystem::path& base_dir) {
    const Reader r(text, source);
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        return r.error_at(e.source(), std::string(e.description()));
    }
    AgentConfig out;
    TRY(r.check_keys(root, "agent.toml",
                     {"data_dir", "listen", "socket", "engine", "engine_bin", "container_network",
                      "cgroup_root", "proxy_bin", "tls_cert", "tls_key", "failed_logins_per_minute",
                      "max_runs_per_app", "metrics_listen", "min_free", "git_fetch_timeout",
                      "proxy_threads", "app_ports", "proxy", "acme"}));
    for (auto [key, target] :
         {std::pair{"data_dir", &out.data_dir}, std::pair{"listen", &out.listen},
          std::pair{"socket", &out.socket}, std::pair{"engine", &out.engine},
          std::pair{"engine_bin", &out.engine_bin},
          std::pair{"container_network", &out.container_network},
          std::pair{"cgroup_root", &out.cgroup_root}, std::pair{"proxy_bin", &out.proxy_bin},
          std::pair{"metrics_listen", &out.metrics_listen}, std::pair{"min_free", &out.min_free},
          std::pair{"git_fetch_timeout", &out.git_fetch_timeout},
          std::pair{"app_ports", &out.app_ports}}) {
        TRY(read_string(r, root, key, key, *target));
    }
    if (out.min_free)
        if (auto min_free = parse_min_free(*out.min_free); !min_free)
            return r.error_at(root.get("min_free")->source(), min_free.error().message);
    if (out.app_ports)
        if (auto range = runtime::parse_port_range(*out.app_ports); !range)
            return r.error_at(root.get("app_ports")->source(), range.error().message);
    if (out.git_fetch_timeout)
        if (auto timeout = common::parse_duration(*out.git_fetch_timeout);
            !timeout || timeout->count() <= 0)
            return r.error_at(root.get("git_fetch_timeout")->source(),
                              "git_fetch_timeout must be a duration longer than 0s, e.g. \"2m\"");
    if (out.engine && *out.engine != "auto" && *out.engine != "docker" && *out.engine != "podman" &&
        *out.engine != "process")
        return r.error_at(root.get("engine")->source(),
                          "engine must be one of: auto, docker, podman, process");
    if (const auto* n = root.get("failed_logins_per_minute")) {
        TRY_ASSIGN(const auto limit, r.integer_at(*n, "failed_logins_per_minute", 0, 1000000));
        out.failed_logins_per_minute = static_cast<int>(limit);
    }
    if (const auto* n = root.get("max_runs_per_app")) {
        TRY_ASSIGN(const auto limit, r.integer_at(*n, "max_runs_per_app", 0, 10000));
        out.max_runs_per_app = static_cast<int>(limit);
    }
    if (const auto* n = root.get("proxy_threads")) {
        TRY_ASSIGN(const auto threads, r.integer_at(*n, "proxy_threads", 0, 1024));
        out.proxy_threads = static_cast<int>(threads);
    }
    TRY(read_api_tls(r, root, base_dir, out));
    if (const auto* n = root.get("proxy")) {
        TRY_ASSIGN(const toml::table* proxy, r.table_at(*n, "[proxy]"));
        TRY(read_proxy(r, *proxy, base_dir, out));
    }
    if (const auto* n = root.get("acme")) {
        TRY_ASSIGN(const toml::table* acme, r.table_at(*n, "[acme]"));
        TRY(read_acme(r, *acme, base_dir, out));
    }
    if (out.redirect_https.value_or(false) && out.certificates.empty() && !out.acme)
        return r.error_at(root["proxy"]["redirect_https"].node()->source(),
                          "proxy.redirect_https needs at least one [[proxy.certificates]] entry "
                          "or [acme]");
    return out;
}

common::Result<AgentConfig> load_agent_config(const std::filesystem::path& path) {
    auto text = common::read_file(path);
    if (!text)
        return common::make_error(common::ErrorKind::config, text.error().message);
    return parse_agent_config(*text, path.string(), std::filesystem::absolute(path).parent_path());
}

} // namespace agent
