// deployctl agent install | upgrade ssh://USER@HOST: puts deploy-agent on a server from this
// machine over SSH (docs/agent-setup.md): copies the Debian package, installs it with apt,
// sets the engine and agent.toml, lets USER deploy (group deploy), starts the service and
// waits until the agent answers. Every step first looks at what is there: a second run
// changes nothing and says so; --dry-run lists the commands it would run.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/credentials.hpp>
#include <cli/hosts.hpp>
#include <cli/secret_input.hpp>
#include <cli/self_signed.hpp>
#include <cli/transport/http_client.hpp>
#include <cli/transport/ssh_config.hpp>
#include <cli/transport/ssh_remote.hpp>
#include <common/command_line.hpp>
#include <common/hash.hpp>
#include <common/version.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace cli::commands {

namespace {

namespace fs = std::filesystem;
using common::ErrorKind;
using output::InstallStep;
using transport::RemoteResult;
using transport::RemoteShell;

constexpr const char* k_agent_toml = "/etc/deploy-agent/agent.toml";
constexpr const char* k_pid_file = "/run/deploy-agent/agent.pid";
constexpr const char* k_tls_cert = "/etc/deploy-agent/tls/agent.pem";
constexpr const char* k_tls_key = "/etc/deploy-agent/tls/agent.key";

struct InstallOptions {
    std::string url;
    std::string package;
    std::string engine = "auto";
    std::string config;
    bool yes = false;
    bool dry_run = false;
    bool upgrade = false;
    bool https = false;
    std::string https_listen = "0.0.0.0:7443";
    int timeout_s = 60;
};

// What the server has, read before changing anything (one shell script, read-only).
const char* k_probe = R"sh(set +e
echo "uid=$(id -u)"
echo "user=$(id -un)"
echo "home=$HOME"
[ -r /etc/os-release ] && . /etc/os-release && echo "os=$PRETTY_NAME"
command -v dpkg >/dev/null && echo "arch=$(dpkg --print-architecture)"
command -v apt-get >/dev/null && echo apt=yes
command -v sudo >/dev/null && echo sudo=yes
[ -d /run/systemd/system ] && echo systemd=yes
command -v docker >/dev/null && echo docker=yes
echo "installed=$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' deploy-agent 2>/dev/null)"
[ -f /etc/deploy-agent/agent.toml ] && echo config=yes
echo "groups=$(id -nG "$(id -un)" 2>/dev/null)" # the account's, not this session's
echo "agent_groups=$(id -nG deploy-agent 2>/dev/null)"
if [ -d /run/systemd/system ]; then
  echo "enabled=$(systemctl is-enabled deploy-agent 2>/dev/null)"
  echo "active=$(systemctl is-active deploy-agent 2>/dev/null)"
fi
)sh";

std::map<std::string, std::string> key_values(const std::string& text) {
    std::map<std::string, std::string> values;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (const auto eq = line.find('='); eq != std::string::npos)
            values[line.substr(0, eq)] = line.substr(eq + 1);
    return values;
}

// The last lines of a command's output, for an error message.
std::string tail_of(const RemoteResult& r, std::size_t lines = 12) {
    std::string text = r.out + r.err;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    std::size_t start = text.size();
    for (std::size_t n = 0; n < lines && start != std::string::npos && start > 0; ++n)
        start = text.rfind('\n', start - 1);
    return start == std::string::npos || start == 0 ? text : text.substr(start + 1);
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Asks on the terminal whether to trust a host key (agent install without --yes).
bool ask_host_key(const std::string& name, const std::string& type,
                  const std::string& fingerprint) {
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
        return false;
    std::cerr << fmt::format("The host key of {} is not known yet: {} {}\n"
                             "Check it with the server's administrator "
                             "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub there).\n"
                             "Trust it and record it in known_hosts? [y/N] ",
                             name, type, fingerprint)
              << std::flush;
    std::string answer;
    std::getline(std::cin, answer);
    return answer == "y" || answer == "Y" || answer == "yes";
}

common::Result<transport::SshOptions> ssh_options_for(const Context& ctx,
                                                      const InstallOptions& options) {
    TRY_ASSIGN(auto url, parse_host_url(options.url));
    if (url.scheme != Scheme::ssh)
        return common::make_error(
            ErrorKind::usage,
            fmt::format("{}: agent install works over SSH: give ssh://USER@HOST[:PORT]",
                        options.url));
    transport::SshOptions ssh;
    ssh.user = url.user;
    ssh.host = url.host;
    ssh.port = url.port;
    ssh.accept_new_host_key = ctx.global.accept_new_host_key || options.yes;
    ssh.confirm_new_host_key = ask_host_key;
    TRY(transport::apply_ssh_config(ssh, transport::ssh_config_source(ctx.global.ssh_config)));
    return ssh;
}

struct Package {
    fs::path path;
    std::string bytes;
    std::string sha256;
    // From the package itself (dpkg-deb -f, here or on the server).
    std::string name, version, arch;
};

// dpkg-deb -f's "Package: deploy-agent" lines; an error when it is another package.
common::Status read_fields(Package& package, const std::string& text) {
    std::map<std::string, std::string> values;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (const auto colon = line.find(": "); colon != std::string::npos)
            values[line.substr(0, colon)] = line.substr(colon + 2);
    package.name = values["Package"];
    package.version = values["Version"];
    package.arch = values["Architecture"];
    if (package.name != "deploy-agent" || package.version.empty())
        return common::make_error(
            ErrorKind::usage,
            fmt::format("{} is not the deploy-agent package (its Package field: \"{}\")",
                        package.path.string(), package.name));
    return {};
}

// "0.9.0" of the package version "1:0.9.0-2": what the agent itself reports.
std::string upstream_version(std::string version) {
    if (const auto colon = version.find(':'); colon != std::string::npos)
        version.erase(0, colon + 1);
    if (const auto dash = version.rfind('-'); dash != std::string::npos)
        version.erase(dash);
    return version;
}

// --package, else a deploy-agent_VERSION_*.deb of deployctl's own version in the current
// folder.
common::Result<Package> find_package(const InstallOptions& options) {
    fs::path path = options.package;
    if (path.empty()) {
        const auto prefix = fmt::format("deploy-agent_{}_", common::version());
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(".", ec))
            if (entry.path().filename().string().starts_with(prefix) &&
                entry.path().extension() == ".deb")
                path = entry.path();
        if (path.empty())
            return common::make_error(
                ErrorKind::usage,
                fmt::format("which package? Give --package FILE (the deploy-agent .deb; "
                            "scripts/package builds it), or run this where {}ARCH.deb is",
                            prefix));
    }
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
        return common::make_error(ErrorKind::usage,
                                  fmt::format("--package {}: no such file", path.string()));
    Package package;
    package.path = path;
    package.bytes = read_file(path);
    package.sha256 = common::sha256_hex(package.bytes);
    // Its control fields, when this machine has dpkg-deb (else the server reads them).
    const auto command = fmt::format("dpkg-deb -f {} Package Version Architecture 2>/dev/null",
                                     common::shell_quote(path.string()));
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
        std::string text;
        char buffer[512];
        for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
            text.append(buffer, n);
        if (::pclose(pipe) == 0)
            TRY(read_fields(package, text));
    }
    return package;
}

class Installer {
  public:
    Installer(Context& ctx, const InstallOptions& options, RemoteShell& shell, std::string host)
        : m_ctx(ctx), m_options(options), m_shell(shell), m_host(std::move(host)) {}

    common::Status run(Package& package, const transport::SshOptions& ssh);

  private:
    void emit(const std::string& step, const std::string& state, const std::string& detail,
              std::vector<std::string> commands = {}) {
        m_ctx.out->emit(InstallStep{m_host, step, state, detail, std::move(commands)});
    }
    // Runs a read-only command as the login user.
    common::Result<RemoteResult> look(const std::string& command, std::string_view input = {}) {
        return m_shell.run(command, input);
    }
    // Runs a command that changes the server, as root (sudo for another user); --dry-run
    // lists it instead. An exit status other than 0 is an error saying `what`.
    // A command run as root, and what it reads on stdin.
    struct Command {
        Command(std::string l, std::string i = {}) : line(std::move(l)), input(std::move(i)) {}
        Command(const char* l) : line(l) {}
        std::string line;
        std::string input;
    };
    common::Status change(const std::string& step, const std::string& detail,
                          const std::vector<Command>& commands);
    // Runs a command as root (through sudo for another user); a failure is a result.
    common::Result<RemoteResult> as_root(const std::string& command, std::string_view input = {});
    common::Status certificate();
    common::Status token();
    common::Status detect_sudo();
    common::Status upload(Package& package);
    common::Status check_arch(const Package& package);
    common::Status install(const Package& package);
    common::Status configure();
    common::Status engine();
    common::Status group();
    common::Status service();
    common::Result<std::string> answer(const transport::SshOptions& ssh);
    common::Status reprobe() {
        TRY_ASSIGN(auto probe, look(k_probe));
        m_probe = key_values(probe.out);
        return {};
    }

    Context& m_ctx;
    const InstallOptions& m_options;
    RemoteShell& m_shell;
    std::string m_host;
    std::map<std::string, std::string> m_probe;
    enum class Sudo { none, nopasswd, password } m_sudo = Sudo::none;
    bool m_sudo_pty = false;
    std::string m_password;
    std::string m_remote_package;
    bool m_changed = false;
    std::string m_https_host;  // the server as this machine names it over HTTPS
    std::string m_https_url;   // https://HOST:PORT
    std::string m_fingerprint; // of the API's certificate (--https)
};

common::Status Installer::detect_sudo() {
    if (m_probe["uid"] == "0")
        return {};
    const auto user_host = m_shell.where();
    if (m_probe["sudo"] != "yes")
        return common::make_error(
            ErrorKind::auth,
            fmt::format("{} is not root and the server has no sudo: log in as root "
                        "(ssh://root@...), or install sudo there and allow this user",
                        user_host));
    TRY_ASSIGN(auto probe, look("sudo -n true"));
    if (probe.status != 0 && probe.err.find("tty") != std::string::npos) {
        m_sudo_pty = true; // sudoers says requiretty
        TRY_ASSIGN(probe, m_shell.run("sudo -n true", {}, true));
    }
    if (probe.status == 0) {
        m_sudo = Sudo::nopasswd;
        return {};
    }
    const auto said = probe.err + probe.out;
    if (said.find("password") == std::string::npos)
        return common::make_error(
            ErrorKind::auth, fmt::format("{} may not use sudo: {}", user_host, tail_of(probe, 3)));
    if (m_options.dry_run) {
        m_sudo = Sudo::password; // asked for when something is run
        return {};
    }
    TRY_ASSIGN(m_password,
               read_secret(fmt::format("[sudo] password for {}: ", user_host), "sudo password"));
    m_sudo = Sudo::password;
    TRY_ASSIGN(auto check, as_root("true"));
    if (check.status != 0)
        return common::make_error(ErrorKind::auth,
                                  fmt::format("sudo on {} refused the password", user_host));
    return {};
}

common::Result<RemoteResult> Installer::as_root(const std::string& command,
                                                std::string_view input) {
    const auto quoted = common::shell_quote(command);
    switch (m_sudo) {
    case Sudo::none:
        return m_shell.run(command, input);
    case Sudo::nopasswd:
        if (!m_sudo_pty)
            return m_shell.run("sudo -n sh -c " + quoted, input);
        break;
    case Sudo::password:
        if (m_password.empty()) // --dry-run asks for no password: nothing is read as root
            return RemoteResult{1, {}, "no sudo password"};
        if (!m_sudo_pty)
            return m_shell.run("sudo -S -k -p '' sh -c " + quoted,
                               m_password + "\n" + std::string(input));
        break;
    }
    // On a terminal (sudoers' requiretty). A program reading a terminal never sees the
    // channel's end of file: the input ends with ^D at the start of a line. sudo flushes
    // what waits on the terminal when it turns echo off for its prompt, so the shell reads
    // the password first and gives it to sudo through a pipe, the input after it.
    std::string bytes(input);
    if (!bytes.empty() && bytes.back() != '\n')
        bytes += '\x04';
    bytes += '\x04';
    std::string line = "stty -echo 2>/dev/null; cat | sudo -n sh -c " + quoted;
    if (m_sudo == Sudo::password) {
        line = "stty -echo 2>/dev/null; IFS= read -r p; { printf '%s\\n' \"$p\"; cat; } | "
               "sudo -S -k -p '' sh -c " +
               quoted;
        bytes = m_password + "\n" + bytes;
    }
    auto result = m_shell.run(line, bytes, true);
    if (result && !m_password.empty()) // echoed before stty turned echo off
        for (std::size_t at; (at = result->out.find(m_password)) != std::string::npos;)
            result->out.replace(at, m_password.size(), "***");
    return result;
}

common::Status Installer::change(const std::string& step, const std::string& detail,
                                 const std::vector<Command>& commands) {
    if (m_options.dry_run) {
        std::vector<std::string> lines;
        for (const auto& command : commands)
            lines.push_back(command.line);
        emit(step, "would", detail, std::move(lines));
        return {};
    }
    for (const auto& command : commands) {
        TRY_ASSIGN(auto result, as_root(command.line, command.input));
        if (result.status != 0)
            return common::make_error(ErrorKind::internal,
                                      fmt::format("{}: {} failed on {} (exit status {}):\n{}", step,
                                                  command.line, m_shell.where(), result.status,
                                                  tail_of(result)));
    }
    m_changed = true;
    emit(step, "done", detail);
    return {};
}

common::Status Installer::upload(Package& package) {
    const auto dir = m_probe["home"] + "/.cache/deploy-agent";
    m_remote_package = dir + "/" + package.path.filename().string();
    const auto quoted = common::shell_quote(m_remote_package);
    TRY_ASSIGN(auto present, look(fmt::format("sha256sum {} 2>/dev/null | cut -d' ' -f1", quoted)));
    const auto size = fmt::format("{:.1f} MB", static_cast<double>(package.bytes.size()) / 1e6);
    if (present.out.starts_with(package.sha256)) {
        emit("upload", "unchanged", fmt::format("{} is on the server", m_remote_package));
    } else if (m_options.dry_run) {
        emit("upload", "would", fmt::format("{} ({}) to {}", package.path.string(), size, dir),
             {fmt::format("cat > {}", quoted)});
        return check_arch(package);
    } else {
        const auto tmp = common::shell_quote(m_remote_package + ".tmp");
        TRY_ASSIGN(auto sent,
                   look(fmt::format("umask 077 && mkdir -p {} && cat > {} && mv -f {} {}",
                                    common::shell_quote(dir), tmp, tmp, quoted),
                        package.bytes));
        if (sent.status != 0)
            return common::make_error(ErrorKind::io,
                                      fmt::format("cannot copy the package to {}: {}",
                                                  m_shell.where(), tail_of(sent, 3)));
        TRY_ASSIGN(present, look(fmt::format("sha256sum {} | cut -d' ' -f1", quoted)));
        if (!present.out.starts_with(package.sha256))
            return common::make_error(ErrorKind::io,
                                      fmt::format("the package copied to {} does not match {}",
                                                  m_shell.where(), package.path.string()));
        emit("upload", "done",
             fmt::format("{} ({}) to {}", package.path.filename().string(), size, dir));
    }
    if (package.version.empty()) {
        TRY_ASSIGN(auto fields,
                   look(fmt::format("dpkg-deb -f {} Package Version Architecture", quoted)));
        if (fields.status != 0)
            return common::make_error(ErrorKind::usage,
                                      fmt::format("{} is not a Debian package: {}",
                                                  package.path.string(), tail_of(fields, 2)));
        TRY(read_fields(package, fields.out));
    }
    return check_arch(package);
}

common::Status Installer::check_arch(const Package& package) {
    if (package.arch != "all" && package.arch != m_probe["arch"])
        return common::make_error(
            ErrorKind::usage,
            fmt::format("{} is built for {}; {} is {}: build the package there or for it",
                        package.path.filename().string(), package.arch, m_shell.where(),
                        m_probe["arch"]));
    return {};
}

common::Status Installer::install(const Package& package) {
    const auto& installed = m_probe["installed"]; // "ii 0.9.0" when installed
    const bool present = installed.starts_with("ii ");
    const auto version = present ? installed.substr(3) : std::string();
    if (present && version == package.version) {
        emit("install", "unchanged", fmt::format("deploy-agent {} is installed", version));
        return {};
    }
    if (m_options.upgrade && !present)
        return common::make_error(ErrorKind::usage,
                                  fmt::format("deploy-agent is not installed on {}: run deployctl "
                                              "agent install first",
                                              m_shell.where()));
    if (present && !m_options.dry_run) {
        TRY_ASSIGN(auto newer, look(fmt::format("dpkg --compare-versions {} gt {}",
                                                common::shell_quote(package.version),
                                                common::shell_quote(version))));
        if (newer.status != 0)
            return common::make_error(
                ErrorKind::usage,
                fmt::format("{} has deploy-agent {}, newer than the package's {}: refusing to "
                            "downgrade (remove it there first if you mean it)",
                            m_shell.where(), version, package.version));
    }
    const auto path = common::shell_quote(m_remote_package);
    return change("install",
                  present
                      ? fmt::format("deploy-agent {} over {}", package.version, version)
                      : fmt::format("deploy-agent {} and what it needs, with apt", package.version),
                  {"DEBIAN_FRONTEND=noninteractive apt-get update -qq",
                   "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
                   "-o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef " +
                       path});
}

// The agent.toml `text` with each of `settings` ("KEY = VALUE" lines) as its top-level
// key: the line of that key before the first table replaced, or the setting added first.
std::string with_settings(const std::string& text,
                          const std::vector<std::pair<std::string, std::string>>& settings) {
    static const std::regex table(R"(^\s*\[)");
    std::vector<std::regex> keys;
    for (const auto& setting : settings)
        keys.emplace_back("^\\s*" + setting.first + "\\s*=");
    std::vector<bool> done(settings.size(), false);
    std::istringstream in(text);
    std::string out;
    bool in_table = false;
    for (std::string row; std::getline(in, row);) {
        in_table = in_table || std::regex_search(row, table);
        for (std::size_t i = 0; i < settings.size() && !in_table; ++i)
            if (!done[i] && std::regex_search(row, keys[i])) {
                row = settings[i].first + " = " + settings[i].second;
                done[i] = true;
            }
        out += row + "\n";
    }
    std::string head;
    for (std::size_t i = 0; i < settings.size(); ++i)
        if (!done[i])
            head += settings[i].first + " = " + settings[i].second + "\n";
    return head + out;
}

// /etc/deploy-agent/agent.toml: --config's text (else the server's), with the engine and
// the HTTPS listener of the options.
common::Status Installer::configure() {
    std::vector<std::pair<std::string, std::string>> settings;
    if (m_options.engine != "auto")
        settings.emplace_back("engine", fmt::format("\"{}\"", m_options.engine));
    if (m_options.https) {
        settings.emplace_back("listen", fmt::format("\"{}\"", m_options.https_listen));
        settings.emplace_back("tls_cert", fmt::format("\"{}\"", k_tls_cert));
        settings.emplace_back("tls_key", fmt::format("\"{}\"", k_tls_key));
    }
    if (m_options.config.empty() && settings.empty())
        return {};
    std::string current;
    if (m_probe["config"] != "") {
        TRY_ASSIGN(auto read, as_root(fmt::format("cat {}", k_agent_toml)));
        current = read.out;
    }
    auto text = m_options.config.empty() ? current : read_file(m_options.config);
    text = with_settings(text, settings);
    std::vector<std::string> what;
    if (!m_options.config.empty())
        what.push_back("from " + m_options.config);
    for (const auto& [key, value] : settings)
        what.push_back(key + " = " + value);
    const auto detail = fmt::format("{}: {}", k_agent_toml, fmt::join(what, ", "));
    if (text == current) {
        emit("config", "unchanged", detail);
        return {};
    }
    return change("config", detail,
                  {{fmt::format("umask 027 && mkdir -p /etc/deploy-agent && cat > {0}.new && "
                                "chgrp deploy {0}.new && mv -f {0}.new {0}",
                                k_agent_toml),
                    text}});
}

// --engine docker: the Docker engine, and the agent in its group.
common::Status Installer::engine() {
    if (m_options.engine != "docker")
        return {};
    std::vector<Command> commands;
    std::vector<std::string> what;
    if (m_probe["docker"] != "yes") {
        commands.push_back("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                           "--no-install-recommends docker.io");
        if (m_probe["systemd"] == "yes")
            commands.push_back("systemctl enable --now docker");
        what.push_back("Docker engine installed");
    }
    if ((" " + m_probe["agent_groups"] + " ").find(" docker ") == std::string::npos) {
        commands.push_back("usermod -aG docker deploy-agent");
        what.push_back("deploy-agent in group docker");
    }
    if (commands.empty()) {
        emit("engine", "unchanged", "the Docker engine is there, deploy-agent in group docker");
        return {};
    }
    return change("engine", fmt::format("{}", fmt::join(what, ", ")), commands);
}

// --https: the API's certificate, made here (self-signed, naming the server) unless the
// server has one; its fingerprint is what this machine pins.
common::Status Installer::certificate() {
    if (!m_options.https)
        return {};
    TRY_ASSIGN(auto present, look(fmt::format("cat {} 2>/dev/null", k_tls_cert)));
    if (present.status == 0 && !present.out.empty()) {
        TRY_ASSIGN(m_fingerprint, pem_fingerprint(present.out));
        emit("tls", "unchanged", fmt::format("{} is there: {}", k_tls_cert, m_fingerprint));
        return {};
    }
    TRY_ASSIGN(auto made, make_self_signed(m_https_host));
    m_fingerprint = made.fingerprint;
    const auto dir = fs::path(k_tls_cert).parent_path().string();
    return change(
        "tls",
        fmt::format("a self-signed certificate for {} in {}: {}", m_https_host, dir, m_fingerprint),
        {{fmt::format("install -d -m 0750 -o root -g deploy {0} && umask 077 && cat > {1}.new && "
                      "chown deploy-agent:deploy {1}.new && mv -f {1}.new {1}",
                      dir, k_tls_key),
          made.key_pem},
         {fmt::format("cat > {0}.new && chmod 644 {0}.new && mv -f {0}.new {0}", k_tls_cert),
          made.cert_pem}});
}

// --https: a token of this machine for the agent, with the certificate's fingerprint, in the
// credentials file; one that still works is kept.
common::Status Installer::token() {
    if (!m_options.https)
        return {};
    const auto file = credentials_path();
    TRY_ASSIGN(auto line, read_credential(file, m_https_url));
    auto works = [&](const std::string& token) -> bool {
        transport::HttpOptions http;
        http.token = token;
        http.token_source = TokenSource::given;
        http.tls.fingerprint = m_fingerprint;
        http.tls.pinned_by = "the certificate deployctl agent install read";
        auto client = transport::make_http_client(m_https_url, std::move(http));
        return static_cast<bool>(client->get_json("/v1/info"));
    };
    if (!line.token.empty() && line.fingerprint == m_fingerprint && works(line.token)) {
        emit("token", "unchanged",
             fmt::format("{} has a working token for {}", file.string(), m_https_url));
        return {};
    }
    char here[256] = {};
    ::gethostname(here, sizeof here - 1);
    const auto name = fmt::format("deployctl agent install from {}", here);
    const auto command = fmt::format("runuser -u deploy-agent -- deploy-agent token create "
                                     "--all-apps --scope admin --name {} --data-dir "
                                     "/var/lib/deploy-agent",
                                     common::shell_quote(name));
    if (m_options.dry_run) {
        emit("token", "would", fmt::format("an admin token, stored in {}", file.string()),
             {command});
        return {};
    }
    TRY_ASSIGN(auto made, as_root(command));
    auto token = made.out;
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r'))
        token.pop_back();
    if (made.status != 0 || token.empty() || token.find('\n') != std::string::npos)
        return common::make_error(ErrorKind::internal,
                                  fmt::format("token: deploy-agent token create failed on {}: {}",
                                              m_shell.where(), tail_of(made, 4)));
    TRY(store_credentials(file, m_https_url, token, m_fingerprint));
    if (!works(token))
        return common::make_error(
            ErrorKind::connection,
            fmt::format("{} does not answer over HTTPS with the new token (is {} reachable from "
                        "here? a firewall?); the token is in {}",
                        m_https_url, m_options.https_listen, file.string()));
    m_changed = true;
    emit("token", "done",
         fmt::format("an admin token for {} in {}, pinned to {}", m_https_url, file.string(),
                     m_fingerprint));
    return {};
}

// A login user who is not root deploys through the agent's socket: group deploy.
common::Status Installer::group() {
    if (m_probe["uid"] == "0")
        return {};
    const auto& user = m_probe["user"];
    const auto& groups = m_probe["groups"];
    if ((" " + groups + " ").find(" deploy ") != std::string::npos) {
        emit("group", "unchanged", fmt::format("{} is in group deploy", user));
        return {};
    }
    return change("group", fmt::format("{} in group deploy (may deploy over SSH)", user),
                  {"usermod -aG deploy " + common::shell_quote(user)});
}

common::Status Installer::service() {
    const bool systemd = m_probe["systemd"] == "yes";
    bool active = m_probe["active"] == "active";
    if (!systemd) { // the pid file start-stop-daemon wrote, readable by root only
        TRY_ASSIGN(auto running,
                   as_root(fmt::format("p=$(cat {} 2>/dev/null) && [ -n \"$p\" ] && "
                                       "grep -q deploy-agent \"/proc/$p/cmdline\" 2>/dev/null",
                                       k_pid_file)));
        active = running.status == 0;
    }
    if (active && !m_changed) {
        emit("service", "unchanged", "deploy-agent is running");
        return {};
    }
    std::vector<Command> commands;
    if (systemd) {
        if (m_probe["enabled"] != "enabled")
            commands.push_back("systemctl enable deploy-agent");
        commands.push_back(active ? "systemctl restart deploy-agent"
                                  : "systemctl start deploy-agent");
        return change("service",
                      active ? "deploy-agent restarted (the apps keep running)"
                             : "deploy-agent enabled and started",
                      commands);
    }
    // No systemd (a container, a chroot): started as the unit would, by start-stop-daemon.
    if (active)
        commands.push_back(fmt::format(
            "start-stop-daemon --stop --quiet --oknodo --pidfile {} --retry 30", k_pid_file));
    commands.push_back(
        fmt::format("install -d -m 0700 -o deploy-agent -g deploy /var/lib/deploy-agent && "
                    "install -d -m 0750 -o deploy-agent -g deploy /run/deploy-agent && "
                    "start-stop-daemon --start --quiet --background --chuid deploy-agent:deploy "
                    "--umask 077 --make-pidfile --pidfile {} --output /var/log/deploy-agent.log "
                    "--exec /usr/bin/deploy-agent -- serve --data-dir /var/lib/deploy-agent "
                    "--socket /run/deploy-agent/agent.sock",
                    k_pid_file));
    return change("service",
                  fmt::format("deploy-agent {} without systemd (start-stop-daemon, log in "
                              "/var/log/deploy-agent.log)",
                              active ? "restarted" : "started"),
                  commands);
}

// Asks the agent over SSH, as deployctl deploy will, until it answers.
common::Result<std::string> Installer::answer(const transport::SshOptions& ssh) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(m_options.timeout_s);
    common::Error last{ErrorKind::connection, "no answer"};
    for (;;) {
        auto options = ssh;
        options.accept_new_host_key = true; // checked a moment ago
        auto client = transport::make_ssh_client(std::move(options), m_options.url);
        if (client) {
            auto health = (*client)->get_json("/v1/health");
            if (health)
                return health->value("version", "");
            last = health.error();
        } else {
            last = client.error();
        }
        if (std::chrono::steady_clock::now() > deadline)
            return common::make_error(
                ErrorKind::timeout,
                fmt::format("deploy-agent on {} did not answer within {} s: {}", m_shell.where(),
                            m_options.timeout_s, last.message));
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
}

common::Status Installer::run(Package& package, const transport::SshOptions& ssh) {
    const auto started = std::chrono::steady_clock::now();
    TRY(reprobe());
    if (m_probe["apt"] != "yes" || m_probe["arch"].empty())
        return common::make_error(
            ErrorKind::usage,
            fmt::format("{} runs {}: deployctl agent install needs Debian or Ubuntu (apt and "
                        "dpkg); elsewhere, build deploy-agent from source (docs/agent-setup.md)",
                        m_shell.where(),
                        m_probe["os"].empty() ? "an unknown system" : m_probe["os"]));
    emit("connect", "done",
         fmt::format("{} ({}, {}{}{})", m_shell.where(), m_probe["os"], m_probe["arch"],
                     m_probe["systemd"] == "yes" ? ", systemd" : ", no systemd",
                     m_probe["uid"] == "0" ? "" : ", sudo"));
    TRY(detect_sudo());
    if (m_options.https) {
        m_https_host = ssh.host;
        const auto port = m_options.https_listen.substr(m_options.https_listen.rfind(':') + 1);
        m_https_url = fmt::format(
            "https://{}:{}",
            ssh.host.find(':') != std::string::npos ? "[" + ssh.host + "]" : ssh.host, port);
    }
    TRY(upload(package));
    if (package.version.empty()) { // --dry-run, no dpkg-deb here, the package not there
        emit("install", "would", "the package's version is known once it is on the server");
        m_ctx.out->emit(output::Installed{m_host, "", false, true, 0, {}});
        return {};
    }
    TRY(install(package));
    if (!m_options.dry_run)
        TRY(reprobe()); // the package made the group, the user, the config
    TRY(certificate());
    TRY(configure());
    TRY(engine());
    TRY(group());
    TRY(service());
    if (m_options.dry_run) {
        TRY(token());
        m_ctx.out->emit(output::Installed{m_host, package.version, m_changed, true, 0, {}});
        return {};
    }
    TRY_ASSIGN(auto version, answer(ssh));
    if (version != upstream_version(package.version))
        return common::make_error(
            ErrorKind::internal,
            fmt::format("{} answers with deploy-agent {}, not the package's {}: is another "
                        "agent running there (systemctl status deploy-agent)?",
                        m_shell.where(), version, package.version));
    TRY(token());
    const auto& url = m_options.https ? m_https_url : m_options.url;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    m_ctx.out->emit(output::Installed{
        m_host,
        version,
        m_changed,
        false,
        seconds,
        {fmt::format("deployctl agent info --host {}", url),
         fmt::format("deployctl deploy --host {}  (or hosts = [\"{}\"] in deploy.toml)", url,
                     url)}});
    return {};
}

common::Status install_agent(Context& ctx, const InstallOptions& options) {
    if (!options.config.empty() && !fs::is_regular_file(options.config))
        return common::make_error(ErrorKind::usage,
                                  fmt::format("--config {}: no such file", options.config));
    TRY_ASSIGN(auto package, find_package(options));
    TRY_ASSIGN(auto ssh, ssh_options_for(ctx, options));
    TRY_ASSIGN(auto shell, RemoteShell::open(ssh));
    Installer installer(ctx, options, *shell, options.url);
    return installer.run(package, ssh);
}

void add_install_command(CLI::App& agent, Context& ctx, bool upgrade) {
    auto options = std::make_shared<InstallOptions>();
    options->upgrade = upgrade;
    auto* cmd =
        upgrade
            ? agent.add_subcommand("upgrade",
                                   "Install a newer deploy-agent package on a server over SSH and "
                                   "restart the agent (the apps and the proxy keep serving)")
            : agent.add_subcommand(
                  "install", "Install deploy-agent on a Debian or Ubuntu server over SSH: "
                             "copy the package, apt install it, start the service, wait until "
                             "it answers; a second run changes nothing");
    cmd->add_option("url", options->url,
                    "The server: ssh://USER@HOST[:PORT] or an alias of "
                    "~/.ssh/config (ssh://NAME)")
        ->required()
        ->type_name("URL");
    cmd->add_option("--package", options->package,
                    "The deploy-agent .deb (default: deploy-agent_VERSION_*.deb of this "
                    "deployctl's version in the current folder)")
        ->type_name("FILE");
    if (!upgrade) {
        cmd->add_option("--engine", options->engine,
                        "auto (the agent picks), docker (installs the Docker engine when "
                        "missing) or process")
            ->check(CLI::IsMember({"auto", "docker", "process"}))
            ->type_name("ENGINE");
        cmd->add_option("--config", options->config,
                        "An agent.toml to put in /etc/deploy-agent (kept by later upgrades)")
            ->type_name("FILE");
        cmd->add_flag("--https", options->https,
                      "Serve the API over HTTPS too: a self-signed certificate for the server, "
                      "an admin token of this machine and the certificate's fingerprint in the "
                      "credentials file");
        cmd->add_option("--https-listen", options->https_listen,
                        "With --https: the API's address (default 0.0.0.0:7443)")
            ->type_name("ADDRESS:PORT");
    }
    cmd->add_flag("--yes,-y", options->yes,
                  "Do not ask: trust the server's host key the first time it is seen");
    cmd->add_flag("--dry-run", options->dry_run,
                  "Connect and look, then list the commands it would run; change nothing");
    cmd->add_option("--timeout", options->timeout_s,
                    "Seconds to wait for the agent to answer once started (default 60)")
        ->type_name("SECONDS");
    cmd->callback([&ctx, options] {
        ctx.command = [&ctx, options] { return install_agent(ctx, *options); };
    });
}

} // namespace

void add_agent_install(CLI::App& agent, Context& ctx) {
    add_install_command(agent, ctx, false);
    add_install_command(agent, ctx, true);
}

} // namespace cli::commands
