#include <cli/hosts.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace cli {

namespace {

using common::ErrorKind;

common::Error usage(std::string message) {
    return common::make_error(ErrorKind::usage, std::move(message));
}

const char* k_url_forms = "http://127.0.0.1:7070, https://HOST:7443 or ssh://USER@HOST";

// Splits "host", "host:port", "[v6]" or "[v6]:port" into url.host / url.port.
common::Status parse_authority(std::string_view text, std::string_view whole, HostUrl& url) {
    std::string_view port;
    if (text.starts_with('[')) {
        auto close = text.find(']');
        if (close == std::string_view::npos)
            return usage(fmt::format("bad agent URL '{}': missing ']'", whole));
        url.host = std::string(text.substr(1, close - 1));
        auto rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (!rest.starts_with(':'))
                return usage(fmt::format("bad agent URL '{}': expected ':PORT' after ']'", whole));
            port = rest.substr(1);
        }
    } else {
        auto colon = text.rfind(':');
        url.host = std::string(text.substr(0, colon));
        if (colon != std::string_view::npos)
            port = text.substr(colon + 1);
    }
    if (url.host.empty())
        return usage(fmt::format("bad agent URL '{}': no host name", whole));
    if (url.host.find_first_of(" /?#@[]") != std::string::npos)
        return usage(fmt::format("bad agent URL '{}': invalid host name", whole));
    if (port.empty())
        return {};
    int value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || value < 1 || value > 65535)
        return usage(fmt::format("bad agent URL '{}': the port must be 1-65535", whole));
    url.port = value;
    return {};
}

std::string format_base_url(const HostUrl& url) {
    const char* scheme = url.scheme == Scheme::http    ? "http"
                         : url.scheme == Scheme::https ? "https"
                                                       : "ssh";
    std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
    std::string user = url.user.empty() ? "" : url.user + "@";
    if (url.port == 0)
        return fmt::format("{}://{}{}", scheme, user, host);
    return fmt::format("{}://{}{}:{}", scheme, user, host, url.port);
}

std::vector<std::string> split_list(std::string_view text) {
    std::vector<std::string> out;
    std::string current;
    for (char c : text) {
        if (c == ',' || c == ' ' || c == '\t' || c == '\n') {
            if (!current.empty())
                out.push_back(std::move(current));
            current.clear();
        } else {
            current += c;
        }
    }
    if (!current.empty())
        out.push_back(std::move(current));
    return out;
}

common::Result<std::vector<std::string>> hosts_of_target(const std::string& name,
                                                         const common::TargetConfig& target) {
    if (target.hosts.empty())
        return common::make_error(
            ErrorKind::config,
            fmt::format(
                "target '{}' in deploy.toml lists no hosts: add hosts = [\"https://HOST:7443\"] "
                "under [targets.{}], or pass --host URL",
                name, name));
    return target.hosts;
}

} // namespace

common::Result<HostUrl> parse_host_url(std::string_view text) {
    HostUrl url;
    auto sep = text.find("://");
    if (sep == std::string_view::npos)
        return usage(fmt::format("bad agent URL '{}': expected {}", text, k_url_forms));
    auto scheme = text.substr(0, sep);
    if (scheme == "http")
        url.scheme = Scheme::http;
    else if (scheme == "https")
        url.scheme = Scheme::https;
    else if (scheme == "ssh")
        url.scheme = Scheme::ssh;
    else
        return usage(fmt::format("bad agent URL '{}': unknown scheme '{}', expected {}", text,
                                 scheme, k_url_forms));
    auto rest = text.substr(sep + 3);
    auto slash = rest.find_first_of("/?#");
    if (slash != std::string_view::npos) {
        if (rest.substr(slash) != "/")
            return usage(fmt::format("bad agent URL '{}': a path is not allowed, expected {}", text,
                                     k_url_forms));
        rest = rest.substr(0, slash);
    }
    auto at = rest.rfind('@');
    if (at != std::string_view::npos) {
        if (url.scheme != Scheme::ssh)
            return usage(
                fmt::format("bad agent URL '{}': a user name is only allowed with ssh://", text));
        url.user = std::string(rest.substr(0, at));
        rest = rest.substr(at + 1);
    }
    if (auto st = parse_authority(rest, text, url); !st)
        return st.error();
    url.base_url = format_base_url(url);
    return url;
}

common::Status check_transport(const HostUrl& url) {
    if (url.scheme == Scheme::http && !is_loopback_host(url.host))
        return usage(fmt::format(
            "{}: plain HTTP is only allowed to loopback; use https:// or ssh:// (e.g. https://{} "
            "or ssh://USER@{}): plain HTTP would carry deployments and tokens unencrypted "
            "(loopback: 127.0.0.0/8, ::1, localhost)",
            url.base_url, url.port ? fmt::format("{}:{}", url.host, url.port) : url.host,
            url.host));
    return {};
}

const common::TargetConfig* selected_target(const HostSources& sources) {
    const common::AppConfig* config = sources.config;
    if (!config)
        return nullptr;
    auto it = config->targets.find(sources.target.empty() ? "production" : sources.target);
    if (it != config->targets.end())
        return &it->second;
    if (sources.target.empty() && config->targets.size() == 1)
        return &config->targets.begin()->second;
    return nullptr;
}

common::Result<std::vector<std::string>> resolve_hosts(const HostSources& sources) {
    if (!sources.flags.empty())
        return sources.flags;
    if (sources.env) {
        auto hosts = split_list(*sources.env);
        if (!hosts.empty())
            return hosts;
    }
    const common::AppConfig* config = sources.config;
    if (!sources.target.empty()) {
        if (!config)
            return usage(fmt::format("-t {} needs a deploy.toml with [targets.{}]", sources.target,
                                     sources.target));
        auto it = config->targets.find(sources.target);
        if (it == config->targets.end()) {
            std::vector<std::string> names;
            for (const auto& [name, t] : config->targets)
                names.push_back(name);
            return usage(fmt::format(
                "no target '{}' in deploy.toml ({})", sources.target,
                names.empty() ? std::string("it has no [targets.NAME] sections")
                              : "known targets: " + fmt::format("{}", fmt::join(names, ", "))));
        }
        return hosts_of_target(it->first, it->second);
    }
    if (config && config->targets.size() == 1)
        return hosts_of_target(config->targets.begin()->first, config->targets.begin()->second);
    if (config) {
        auto it = config->targets.find("production");
        if (it != config->targets.end())
            return hosts_of_target(it->first, it->second);
        if (config->targets.size() > 1)
            return usage("deploy.toml lists several targets and none is named \"production\": "
                         "choose one with -t NAME, or pass --host URL");
    }
    return usage("no agent to talk to: pass --host URL or list hosts under [targets.NAME] in "
                 "deploy.toml");
}

} // namespace cli
