#include <agent/git/keys.hpp>
#include <common/command_line.hpp>
#include <common/config.hpp>
#include <common/fs.hpp>
#include <common/ssh_key.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <pwd.h>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace agent::git {

namespace {

using common::ErrorKind;
using common::make_error;
namespace fs = std::filesystem;

constexpr std::string_view k_prefix = "restrict,command=\"";

int fail(const std::string& message) {
    std::fprintf(stderr, "deploy-agent keys: %s\n", message.c_str());
    return 1;
}

bool valid_key_name(const std::string& name) {
    return !name.empty() && name.size() <= 64 &&
           std::all_of(name.begin(), name.end(), [](unsigned char c) {
               return std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '@';
           });
}

// The authorized_keys file, and who must own it (uid -1: leave as is).
struct Target {
    fs::path file;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
};

common::Result<Target> target_of(const KeysCommand& command) {
    if (!command.file.empty())
        return Target{command.file};
    std::vector<char> buffer(4096);
    passwd entry{};
    passwd* found = nullptr;
    if (::getpwnam_r(command.user.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
        !found)
        return make_error(ErrorKind::not_found,
                          fmt::format("there is no user \"{}\" on this server: create the push "
                                      "user first (docs/git.md: useradd --system --create-home "
                                      "--shell /bin/sh --groups deploy {}), or name another with "
                                      "--user",
                                      command.user, command.user));
    return Target{fs::path(found->pw_dir) / ".ssh" / "authorized_keys", found->pw_uid,
                  found->pw_gid};
}

// The forced command's words from a line `keys add` wrote; empty for any other line.
std::vector<std::string> forced_command(std::string_view line) {
    if (line.substr(0, k_prefix.size()) != k_prefix)
        return {};
    line.remove_prefix(k_prefix.size());
    const auto end = line.find('"');
    if (end == std::string_view::npos)
        return {};
    auto words = common::split_words(line.substr(0, end));
    if (!words || words->size() < 2 || (*words)[1] != "git-receive")
        return {};
    return *words;
}

std::optional<PushKey> parse_line(const std::string& line) {
    const auto words = forced_command(line);
    if (words.empty())
        return std::nullopt;
    PushKey key;
    for (std::size_t i = 2; i + 1 < words.size(); i += 2) {
        if (words[i] == "--key")
            key.name = words[i + 1];
        else if (words[i] == "--app")
            key.apps.push_back(words[i + 1]);
        else if (words[i] == "--socket")
            key.socket = words[i + 1];
    }
    const auto closing = line.find('"', k_prefix.size());
    auto parsed = common::parse_public_key(line.substr(closing + 2));
    if (!parsed || key.name.empty())
        return std::nullopt;
    key.type = parsed->type;
    key.fingerprint = common::fingerprint_sha256(parsed->blob);
    return key;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

// The authorized_keys file a command works on, and its text ("" while it does not exist).
struct Loaded {
    Target target;
    std::string text;
};
common::Result<Loaded> load(const KeysCommand& command) {
    TRY_ASSIGN(auto target, target_of(command));
    std::error_code ec;
    if (!fs::exists(target.file, ec))
        return Loaded{std::move(target), ""};
    TRY_ASSIGN(auto text, common::read_file(target.file));
    return Loaded{std::move(target), std::move(text)};
}

// Writes the file atomically, 0600, owned by the push user (and its ~/.ssh, 0700).
common::Status write_keys(const Target& target, const std::string& text) {
    const auto dir = target.file.parent_path();
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
        TRY(common::ensure_directory(dir, fs::perms::owner_all));
        if (target.uid != static_cast<uid_t>(-1) &&
            ::chown(dir.c_str(), target.uid, target.gid) != 0)
            return make_error(ErrorKind::io, fmt::format("cannot give {} to the push user: {}",
                                                         dir.string(), std::strerror(errno)));
    }
    TRY(common::atomic_write_file(target.file, text, 0600));
    if (target.uid != static_cast<uid_t>(-1) &&
        ::chown(target.file.c_str(), target.uid, target.gid) != 0)
        return make_error(ErrorKind::io, fmt::format("cannot give {} to the push user: {}",
                                                     target.file.string(), std::strerror(errno)));
    return {};
}

std::string apps_text(const std::vector<std::string>& apps) {
    if (apps.empty())
        return "every app";
    std::string text;
    for (const auto& app : apps)
        text += (text.empty() ? "" : ", ") + app;
    return text;
}

} // namespace

std::vector<PushKey> read_push_keys(const std::string& text) {
    std::vector<PushKey> keys;
    for (const auto& line : lines_of(text))
        if (auto key = parse_line(line))
            keys.push_back(std::move(*key));
    return keys;
}

std::string push_key_line(const fs::path& program, const PushKey& key, const std::string& base64) {
    std::vector<std::string> words = {program.string(), "git-receive", "--key", key.name};
    for (const auto& app : key.apps) {
        words.push_back("--app");
        words.push_back(app);
    }
    if (!key.socket.empty()) {
        words.push_back("--socket");
        words.push_back(key.socket);
    }
    return fmt::format("{}{}\" {} {} {}", k_prefix, common::shell_join(words), key.type, base64,
                       key.name);
}

int keys_add(const KeysCommand& command) {
    if (!valid_key_name(command.name))
        return fail(fmt::format("\"{}\" cannot name a key: use 1-64 letters, digits, '.', '_', "
                                "'-' or '@'",
                                command.name));
    if (command.apps.empty() == !command.all_apps)
        return fail("say which apps the key may push to: --app APP (one or more), or --all-apps");
    for (const auto& app : command.apps)
        if (!common::is_valid_app_name(app))
            return fail(fmt::format("\"{}\" is not an app's name", app));
    std::string text;
    if (command.key_file.empty() || command.key_file == "-") {
        if (command.key_file.empty() && ::isatty(STDIN_FILENO))
            return fail("give the public key: --key-file KEY.pub, or on stdin "
                        "(deploy-agent keys add NAME --app APP < KEY.pub)");
        text.assign(std::istreambuf_iterator<char>(std::cin), {});
    } else {
        auto read = common::read_file(command.key_file);
        if (!read)
            return fail(read.error().message);
        text = *read;
    }
    auto key = common::parse_public_key(text);
    if (!key)
        return fail(key.error().message);
    for (char c : command.socket)
        if (c == '"' || c == '\n' || c == '\\')
            return fail("the socket's path cannot hold quotes, backslashes or newlines");
    auto loaded = load(command);
    if (!loaded)
        return fail(loaded.error().message);
    const auto* target = &loaded->target;
    const auto* existing = &loaded->text;
    const auto fingerprint = common::fingerprint_sha256(key->blob);
    for (const auto& line : lines_of(*existing)) {
        const auto known = parse_line(line);
        if (known && known->name == command.name)
            return fail(fmt::format("{} already has a key named \"{}\" ({}): deploy-agent keys "
                                    "rm {} first to replace it",
                                    target->file.string(), command.name, known->fingerprint,
                                    command.name));
        // sshd uses the first line of a key: a second one would never be used.
        const auto at = line.find(key->base64);
        if (at != std::string::npos && at > 0 && line[at - 1] == ' ')
            return fail(fmt::format("this key ({}) is already in {}{}: sshd would never use a "
                                    "second line for it",
                                    fingerprint, target->file.string(),
                                    known ? " as \"" + known->name + "\"" : ""));
    }
    std::error_code ec;
    const auto program = fs::read_symlink("/proc/self/exe", ec);
    if (ec)
        return fail("cannot find this program's path (/proc/self/exe)");
    PushKey added{command.name, command.apps, key->type, fingerprint, command.socket};
    std::string text_out = *existing;
    if (!text_out.empty() && text_out.back() != '\n')
        text_out += '\n';
    text_out += push_key_line(program, added, key->base64) + "\n";
    if (auto ok = write_keys(*target, text_out); !ok)
        return fail(ok.error().message);
    std::printf("added key \"%s\" (%s %s) to %s: it may git push to %s\n", command.name.c_str(),
                key->type.c_str(), fingerprint.c_str(), target->file.string().c_str(),
                apps_text(command.apps).c_str());
    return 0;
}

int keys_list(const KeysCommand& command) {
    auto loaded = load(command);
    if (!loaded)
        return fail(loaded.error().message);
    const auto keys = read_push_keys(loaded->text);
    if (command.json) {
        for (const auto& key : keys)
            std::cout << nlohmann::json{{"name", key.name},
                                        {"apps", key.apps},
                                        {"all_apps", key.apps.empty()},
                                        {"type", key.type},
                                        {"fingerprint", key.fingerprint}}
                             .dump()
                      << "\n";
        return 0;
    }
    if (keys.empty()) {
        std::printf("no push keys in %s (deploy-agent keys add NAME --app APP < KEY.pub)\n",
                    loaded->target.file.string().c_str());
        return 0;
    }
    std::size_t width = 4;
    for (const auto& key : keys)
        width = std::max(width, key.name.size());
    std::printf("%-*s  %-51s  %s\n", static_cast<int>(width), "NAME", "FINGERPRINT", "APPS");
    for (const auto& key : keys)
        std::printf("%-*s  %-51s  %s\n", static_cast<int>(width), key.name.c_str(),
                    key.fingerprint.c_str(), apps_text(key.apps).c_str());
    return 0;
}

int keys_remove(const KeysCommand& command) {
    auto loaded = load(command);
    if (!loaded)
        return fail(loaded.error().message);
    const auto* target = &loaded->target;
    const auto* existing = &loaded->text;
    std::string kept;
    bool removed = false;
    for (const auto& line : lines_of(*existing)) {
        if (auto key = parse_line(line); key && key->name == command.name) {
            removed = true;
            continue;
        }
        kept += line + "\n";
    }
    if (!removed)
        return fail(fmt::format("no push key named \"{}\" in {} (deploy-agent keys ls)",
                                command.name, target->file.string()));
    if (auto ok = write_keys(*target, kept); !ok)
        return fail(ok.error().message);
    std::printf("removed key \"%s\" from %s: it can no longer push\n", command.name.c_str(),
                target->file.string().c_str());
    return 0;
}

} // namespace agent::git
