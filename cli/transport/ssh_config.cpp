#include <cli/transport/ssh_config.hpp>
#include <cli/transport/ssh_session.hpp>
#include <common/ascii.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <glob.h>
#include <unistd.h>

namespace cli::transport {

namespace {

namespace fs = std::filesystem;
using common::ErrorKind;

constexpr int k_max_include_depth = 16;
constexpr int k_max_jump_depth = 8;

// A line's words as ssh(1) splits them: "Keyword value" or "Keyword=value", then blanks
// separate, double quotes group, and a word beginning with '#' ends the line.
std::vector<std::string> split_words(std::string_view line) {
    std::vector<std::string> words;
    const auto blank = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    std::size_t i = 0;
    while (i < line.size() && blank(line[i]))
        ++i;
    if (i == line.size() || line[i] == '#')
        return words;
    const auto keyword_end = std::min(line.find_first_of(" \t=", i), line.size());
    words.emplace_back(line.substr(i, keyword_end - i));
    i = keyword_end;
    while (i < line.size() && blank(line[i]))
        ++i;
    if (i < line.size() && line[i] == '=')
        ++i;
    while (i < line.size()) {
        if (blank(line[i])) {
            ++i;
            continue;
        }
        if (line[i] == '#')
            break;
        if (line[i] == '"') {
            const auto end = std::min(line.find('"', i + 1), line.size());
            words.emplace_back(line.substr(i + 1, end - i - 1));
            i = end + 1;
            continue;
        }
        const auto start = i;
        while (i < line.size() && !blank(line[i]))
            ++i;
        words.emplace_back(line.substr(start, i - start));
    }
    return words;
}

// ssh's glob: '*' any run, '?' one character; case-insensitive, as host names are.
bool glob_match(std::string_view pattern, std::string_view text) {
    std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || common::ascii_lower(pattern[p]) ==
                                                            common::ascii_lower(text[t]))) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*')
        ++p;
    return p == pattern.size();
}

// A list of patterns ("web* !web3"): false as soon as a negated one matches, else true
// when a plain one does.
bool match_list(const std::vector<std::string>& patterns, std::string_view text) {
    bool matched = false;
    for (const auto& pattern : patterns) {
        if (pattern.starts_with('!')) {
            if (glob_match(std::string_view(pattern).substr(1), text))
                return false;
        } else if (glob_match(pattern, text)) {
            matched = true;
        }
    }
    return matched;
}

std::vector<std::string> split_commas(const std::string& text) {
    std::vector<std::string> parts;
    std::size_t begin = 0;
    while (begin <= text.size()) {
        const auto end = std::min(text.find(',', begin), text.size());
        if (end > begin)
            parts.push_back(text.substr(begin, end - begin));
        begin = end + 1;
    }
    return parts;
}

std::string shown(const fs::path& file, const fs::path& home) {
    const auto relative = file.lexically_relative(home);
    if (!relative.empty() && !relative.string().starts_with(".."))
        return "~/" + relative.string();
    return file.string();
}

struct Reader {
    const fs::path& home;
    std::string original_host;
    std::string user_given;
    SshHostConfig config;

    common::Status read_file(const fs::path& file, const fs::path& include_base, bool active,
                             int depth);
    common::Status line(const std::vector<std::string>& words, const std::string& where,
                        const fs::path& include_base, bool& active, int depth);
    bool match(const std::vector<std::string>& words) const;
    std::string current_host() const { return config.host_name.value_or(original_host); }
};

bool Reader::match(const std::vector<std::string>& words) const {
    bool all = true;
    for (std::size_t i = 1; i < words.size(); ++i) {
        auto criterion = common::ascii_lower(words[i]);
        const bool negate = criterion.starts_with('!');
        if (negate)
            criterion.erase(0, 1);
        bool result = false;
        if (criterion == "all" || criterion == "final") {
            result = true; // one pass, which is the final one
        } else if (criterion == "canonical") {
            result = false; // host names are never canonicalized
        } else {
            const std::string argument = i + 1 < words.size() ? words[++i] : std::string();
            const auto patterns = split_commas(argument);
            if (criterion == "host")
                result = match_list(patterns, current_host());
            else if (criterion == "originalhost")
                result = match_list(patterns, original_host);
            else if (criterion == "user")
                result = match_list(patterns, !user_given.empty()
                                                  ? user_given
                                                  : config.user.value_or(detail::local_user()));
            else if (criterion == "localuser")
                result = match_list(patterns, detail::local_user());
            else
                result = false; // exec, localnetwork, tagged, ...: never run, never match
        }
        all = all && (result != negate);
    }
    return all;
}

common::Result<int> number(const std::vector<std::string>& words, const std::string& where, int low,
                           int high) {
    int value = 0;
    const auto& text = words.size() > 1 ? words[1] : std::string();
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || value < low || value > high)
        return common::make_error(ErrorKind::config,
                                  fmt::format("{}: {} wants a number from {} to {}, not \"{}\"",
                                              where, words[0], low, high, text));
    return value;
}

template <class T> void first(std::optional<T>& slot, T value) {
    if (!slot)
        slot = std::move(value);
}

common::Status Reader::line(const std::vector<std::string>& words, const std::string& where,
                            const fs::path& include_base, bool& active, int depth) {
    const auto keyword = common::ascii_lower(words[0]);
    if (keyword == "host") {
        active = match_list({words.begin() + 1, words.end()}, original_host);
        return {};
    }
    if (keyword == "match") {
        active = match(words);
        return {};
    }
    if (!active || words.size() < 2)
        return {};
    const auto& value = words[1];
    if (keyword == "include") {
        for (std::size_t i = 1; i < words.size(); ++i) {
            auto pattern = detail::expand_home(words[i], home);
            if (pattern.is_relative())
                pattern = include_base / pattern;
            struct Found : glob_t {
                Found() : glob_t{} {}
                ~Found() { ::globfree(this); }
            } found;
            if (::glob(pattern.c_str(), 0, nullptr, &found) == 0) {
                for (std::size_t n = 0; n < found.gl_pathc; ++n)
                    if (auto ok = read_file(found.gl_pathv[n], include_base, active, depth + 1);
                        !ok)
                        return ok; // (the paths are freed on the way out)
            }
        }
    } else if (keyword == "hostname") {
        first(config.host_name, value);
    } else if (keyword == "user") {
        first(config.user, value);
    } else if (keyword == "port") {
        TRY_ASSIGN(auto port, number(words, where, 1, 65535));
        first(config.port, port);
    } else if (keyword == "identityfile") {
        config.identity_files.push_back(value);
    } else if (keyword == "identitiesonly") {
        first(config.identities_only, common::ascii_lower(value) == "yes");
    } else if (keyword == "userknownhostsfile") {
        if (config.known_hosts_files.empty())
            config.known_hosts_files.assign(words.begin() + 1, words.end());
    } else if (keyword == "stricthostkeychecking") {
        if (!config.strict_host_key_checking) {
            config.strict_host_key_checking = common::ascii_lower(value);
            config.strict_origin = where;
        }
    } else if (keyword == "proxyjump" || keyword == "proxycommand") {
        if (!config.proxy_jump && !config.proxy_command) { // the first of the two wins
            (keyword == "proxyjump" ? config.proxy_jump : config.proxy_command) = value;
            config.proxy_origin = where;
        }
    } else if (keyword == "connecttimeout") {
        TRY_ASSIGN(auto seconds, number(words, where, 1, 86400));
        first(config.connect_timeout_s, seconds);
    } else if (keyword == "serveraliveinterval") {
        TRY_ASSIGN(auto seconds, number(words, where, 0, 86400));
        first(config.server_alive_interval_s, seconds);
    }
    return {};
}

common::Status Reader::read_file(const fs::path& file, const fs::path& include_base, bool active,
                                 int depth) {
    if (depth > k_max_include_depth)
        return common::make_error(
            ErrorKind::config,
            fmt::format("{}: Include goes deeper than {} files (does it include itself?)",
                        shown(file, home), k_max_include_depth));
    std::ifstream in(file);
    if (!in)
        return {}; // a missing file configures nothing, as for ssh
    std::string text;
    int number = 0;
    while (std::getline(in, text)) {
        ++number;
        const auto words = split_words(text);
        if (words.empty())
            continue;
        const auto where = fmt::format("{}:{}", shown(file, home), number);
        if (auto ok = line(words, where, include_base, active, depth); !ok)
            return ok;
    }
    return {};
}

// %h %p %r %u %d %n %l %% and a leading ~ in a path of the configuration.
std::string expand_tokens(const std::string& text, const SshOptions& options,
                          const std::string& original) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%' || i + 1 == text.size()) {
            out += text[i];
            continue;
        }
        switch (text[++i]) {
        case 'h':
            out += options.host;
            break;
        case 'p':
            out += std::to_string(options.port);
            break;
        case 'r':
            out += options.user.empty() ? detail::local_user() : options.user;
            break;
        case 'u':
            out += detail::local_user();
            break;
        case 'd':
            out += options.home.string();
            break;
        case 'n':
            out += original;
            break;
        case 'l': {
            char name[256] = {};
            ::gethostname(name, sizeof name - 1);
            out += name;
            break;
        }
        case '%':
            out += '%';
            break;
        default:
            out += '%';
            out += text[i];
        }
    }
    return detail::expand_home(out, options.home).string();
}

common::Status apply(SshOptions& options, const SshConfigSource& source, bool cli_accept_new,
                     int depth, bool with_jumps) {
    if (depth > k_max_jump_depth)
        return common::make_error(
            ErrorKind::config,
            fmt::format("ssh config: ProxyJump to {} goes through more than {} hops (does a "
                        "bastion's ProxyJump lead back to itself?)",
                        options.host, k_max_jump_depth));
    const std::string original = options.host;
    TRY_ASSIGN(auto config, read_ssh_config(source, original, options.user, options.home));
    if (config.proxy_command && common::ascii_lower(*config.proxy_command) != "none")
        return common::make_error(
            ErrorKind::config,
            fmt::format("{}: ProxyCommand (for {}) is not supported by deployctl: reach the "
                        "server through ProxyJump instead (docs/ssh.md)",
                        config.proxy_origin, original));
    if (const auto& strict = config.strict_host_key_checking) {
        if (*strict == "no" || *strict == "off" || *strict == "false")
            return common::make_error(
                ErrorKind::config,
                fmt::format("{}: StrictHostKeyChecking {} (for {}) is refused: deployctl never "
                            "sends a token or a release to a server whose host key it has not "
                            "checked. Use StrictHostKeyChecking accept-new (trust a key the first "
                            "time, refuse a changed one) or --accept-new-host-key",
                            config.strict_origin, *strict, original));
        if (*strict == "accept-new")
            options.accept_new_host_key = true;
    }
    if (config.host_name) {
        options.alias = original;
        options.host = expand_tokens(*config.host_name, options, original);
    }
    if (options.user.empty() && config.user)
        options.user = *config.user;
    if (options.port == 0)
        options.port = config.port.value_or(22);
    for (const auto& file : config.identity_files)
        options.identity_files.push_back(expand_tokens(file, options, original));
    options.identities_only = config.identities_only.value_or(false);
    for (const auto& file : config.known_hosts_files)
        if (common::ascii_lower(file) != "none")
            options.known_hosts.emplace_back(expand_tokens(file, options, original));
    if (config.connect_timeout_s)
        options.connect_timeout_s = *config.connect_timeout_s;
    if (config.server_alive_interval_s)
        options.keepalive_s = *config.server_alive_interval_s;
    if (!with_jumps || !config.proxy_jump || common::ascii_lower(*config.proxy_jump) == "none")
        return {};
    TRY_ASSIGN(auto hops, parse_proxy_jump(*config.proxy_jump));
    for (std::size_t i = 0; i < hops.size(); ++i) {
        SshOptions hop;
        hop.user = hops[i].user;
        hop.host = hops[i].host;
        hop.port = hops[i].port;
        hop.home = options.home;
        hop.accept_new_host_key = cli_accept_new;
        hop.confirm_new_host_key = options.confirm_new_host_key;
        // As ssh -J: the first hop is reached as the config says (its own ProxyJump too),
        // each later one through the hop before it.
        if (auto ok = apply(hop, source, cli_accept_new, depth + 1, i == 0); !ok)
            return ok;
        for (auto& earlier : hop.jumps)
            options.jumps.push_back(std::move(earlier));
        hop.jumps.clear();
        options.jumps.push_back(std::move(hop));
    }
    return {};
}

} // namespace

SshConfigSource ssh_config_source(const std::string& flag) {
    SshConfigSource source;
    std::string named = flag;
    if (const char* env = std::getenv("DEPLOYCTL_SSH_CONFIG"); named.empty() && env && *env)
        named = env;
    if (!named.empty()) // absolute now: -C changes the folder before anything connects
        source.file = named == "none" ? fs::path(named) : fs::absolute(named);
    return source;
}

common::Result<SshHostConfig> read_ssh_config(const SshConfigSource& source,
                                              const std::string& host, const std::string& user,
                                              const fs::path& home) {
    Reader reader{home, host, user, {}};
    if (source.file) {
        if (*source.file == "none")
            return reader.config;
        std::error_code ec;
        if (!fs::exists(*source.file, ec))
            return common::make_error(
                ErrorKind::config,
                fmt::format("ssh config {} does not exist (-F or DEPLOYCTL_SSH_CONFIG)",
                            source.file->string()));
        TRY(reader.read_file(*source.file, home / ".ssh", true, 0));
        return reader.config;
    }
    TRY(reader.read_file(home / ".ssh" / "config", home / ".ssh", true, 0));
    TRY(reader.read_file(source.system_file, source.system_file.parent_path(), true, 0));
    return reader.config;
}

common::Result<std::vector<JumpSpec>> parse_proxy_jump(std::string_view value) {
    std::vector<JumpSpec> hops;
    for (auto part : split_commas(std::string(value))) {
        std::string_view text = part;
        if (text.starts_with("ssh://"))
            text.remove_prefix(6);
        while (text.ends_with('/'))
            text.remove_suffix(1);
        JumpSpec hop;
        if (const auto at = text.rfind('@'); at != std::string_view::npos) {
            hop.user = std::string(text.substr(0, at));
            text.remove_prefix(at + 1);
        }
        std::string_view port;
        if (text.starts_with('[')) {
            const auto close = text.find(']');
            if (close == std::string_view::npos)
                return common::make_error(ErrorKind::config,
                                          fmt::format("ProxyJump {}: a '[' without ']'", part));
            hop.host = std::string(text.substr(1, close - 1));
            if (close + 1 < text.size() && text[close + 1] == ':')
                port = text.substr(close + 2);
        } else if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
            hop.host = std::string(text.substr(0, colon));
            port = text.substr(colon + 1);
        } else {
            hop.host = std::string(text);
        }
        if (!port.empty()) {
            const auto [end, error] =
                std::from_chars(port.data(), port.data() + port.size(), hop.port);
            if (error != std::errc() || end != port.data() + port.size() || hop.port < 1 ||
                hop.port > 65535)
                return common::make_error(
                    ErrorKind::config,
                    fmt::format("ProxyJump {}: \"{}\" is not a port", part, port));
        }
        if (hop.host.empty())
            return common::make_error(ErrorKind::config,
                                      fmt::format("ProxyJump {}: no host name", part));
        hops.push_back(std::move(hop));
    }
    if (hops.empty())
        return common::make_error(ErrorKind::config, "ProxyJump names no host");
    return hops;
}

common::Status apply_ssh_config(SshOptions& options, const SshConfigSource& source) {
    if (options.home.empty())
        options.home = detail::home_dir();
    return apply(options, source, options.accept_new_host_key, 0, true);
}

} // namespace cli::transport
