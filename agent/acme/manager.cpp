#include <agent/acme/client.hpp>
#include <agent/acme/crypto.hpp>
#include <agent/acme/manager.hpp>
#include <agent/proxy/client_hello.hpp>
#include <agent/runtime/command.hpp>
#include <agent/runtime/socket_io.hpp>
#include <common/address.hpp>
#include <common/ascii.hpp>
#include <common/command_line.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>
#include <common/timestamp.hpp>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace agent::acme {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;
using nlohmann::json;

namespace {

constexpr std::chrono::seconds k_validation_timeout{90};
constexpr std::chrono::seconds k_issue_timeout{90};
constexpr std::chrono::seconds k_hook_timeout{120};
constexpr std::chrono::seconds k_idle_check{60};

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::int64_t unix_of(std::chrono::system_clock::time_point time) {
    return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

std::string when(std::int64_t unix) {
    if (unix == 0)
        return "-";
    const std::string text = common::format_micros(unix * 1'000'000);
    return text.substr(0, 19) + "Z"; // whole seconds
}

// Removes a file and says nothing when it is already gone.
void remove_quietly(const fs::path& path) {
    std::error_code ec;
    fs::remove(path, ec);
}

} // namespace

bool Manager::eligible(const std::string& host) {
    // The rule deploy-proxy applies to the names it reports for on-demand TLS, one
    // label of "*." allowed in front: lower-case host names of two labels or more, no IP
    // address, no special-use name (localhost, local, internal, invalid).
    std::string_view name = host;
    if (name.rfind("*.", 0) == 0)
        name.remove_prefix(2);
    return proxy::valid_sni_host(name);
}

std::string Manager::file_stem(const std::string& name) {
    return name.rfind("*.", 0) == 0 ? "_." + name.substr(2) : name;
}

Manager::Manager(Settings settings, DataDir data_dir, std::string https_address,
                 std::function<void()> reload_proxy)
    : m_settings(std::move(settings)), m_data_dir(std::move(data_dir)),
      m_https_address(std::move(https_address)), m_reload_proxy(std::move(reload_proxy)) {
    static const bool curl_ready = [] {
        return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    }();
    (void)curl_ready;
}

Manager::~Manager() {
    stop();
}

common::Status Manager::open() {
    if (m_settings.on_demand && m_settings.ask.empty())
        return make_error(ErrorKind::config,
                          "[acme] on_demand = true needs ask = \"http://…\": without it any name "
                          "a client sends would get a certificate (an open issuer is abused)");
    if (m_settings.directory.rfind("https://", 0) != 0)
        return make_error(ErrorKind::config,
                          "[acme] directory must be an https:// URL, not " + m_settings.directory);
    for (const auto& sub : {"", "certs", "http-01", "tls-alpn-01"})
        TRY(common::ensure_directory(dir() / sub, fs::perms::owner_all | fs::perms::group_exec |
                                                      fs::perms::others_exec));
    // Challenges a previous run left open are stale.
    for (const auto& sub : {"http-01", "tls-alpn-01"}) {
        std::error_code ec;
        for (const auto& item : fs::directory_iterator(dir() / sub, ec))
            remove_quietly(item.path());
    }
    auto key = EcKey::load_or_create(dir() / "account.key");
    if (!key)
        return key.error();
    m_account.emplace(std::move(*key));
    load_state();
    if (m_settings.on_demand)
        TRY(open_socket());
    return {};
}

void Manager::load_state() {
    std::lock_guard lock(m_mutex);
    auto text = common::read_file(dir() / "state.json");
    auto state = text ? json::parse(*text, nullptr, false) : json();
    if (state.is_object() && state.contains("names") && state["names"].is_object()) {
        for (const auto& [name, item] : state["names"].items()) {
            if (!item.is_object() || !eligible(name))
                continue;
            Entry& entry = m_entries[name];
            entry.on_demand = item.value("on_demand", false);
            entry.failures = item.value("failures", std::uint64_t{0});
            entry.failures_total = item.value("failures_total", std::uint64_t{0});
            entry.issued_total = item.value("issued_total", std::uint64_t{0});
            entry.next_attempt = item.value("next_attempt", std::int64_t{0});
            entry.last_attempt = item.value("last_attempt", std::int64_t{0});
            entry.last_renewal = item.value("last_renewal", std::int64_t{0});
            entry.last_error = item.value("last_error", std::string());
        }
    }
    // Certificates on disk count, whatever the state says: a restart never
    // issues again what it has.
    std::error_code ec;
    for (const auto& item : fs::directory_iterator(dir() / "certs", ec)) {
        if (item.path().extension() != ".crt")
            continue;
        std::string stem = item.path().stem().string();
        if (stem.rfind("_.", 0) == 0)
            stem = "*." + stem.substr(2);
        if (eligible(stem))
            m_entries[stem];
    }
    for (auto& [name, entry] : m_entries)
        read_certificate_locked(name, entry);
}

void Manager::save_locked() const {
    json names = json::object();
    for (const auto& [name, entry] : m_entries)
        names[name] = {
            {"on_demand", entry.on_demand},           {"failures", entry.failures},
            {"failures_total", entry.failures_total}, {"issued_total", entry.issued_total},
            {"next_attempt", entry.next_attempt},     {"last_attempt", entry.last_attempt},
            {"last_renewal", entry.last_renewal},     {"last_error", entry.last_error}};
    if (auto written =
            common::atomic_write_file(dir() / "state.json", json{{"names", names}}.dump(2), 0600);
        !written)
        common::log_warn("acme: " + written.error().message);
}

void Manager::read_certificate_locked(const std::string& name, Entry& entry) const {
    entry.not_before = entry.not_after = 0;
    entry.issuer.clear();
    auto text = common::read_file(dir() / "certs" / (file_stem(name) + ".crt"));
    if (!text)
        return;
    auto summary = summarize_certificate(*text);
    if (!summary)
        return;
    entry.not_before = unix_of(summary->not_before);
    entry.not_after = unix_of(summary->not_after);
    entry.issuer = summary->issuer;
}

std::int64_t Manager::renew_at(const Entry& entry) {
    if (entry.not_after == 0)
        return 0;
    // Two thirds of the lifetime: 60 days into Let's Encrypt's 90.
    return entry.not_before + (entry.not_after - entry.not_before) * 2 / 3;
}

void Manager::start() {
    if (m_thread.joinable())
        return;
    m_thread = std::thread([this] { run(); });
    if (m_socket >= 0)
        m_socket_thread = std::thread([this] { socket_loop(); });
}

void Manager::stop() {
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
    }
    m_cancel = true;
    m_wake.notify_all();
    if (m_thread.joinable())
        m_thread.join();
    if (m_socket_thread.joinable())
        m_socket_thread.join();
    if (m_socket >= 0) {
        ::close(m_socket);
        m_socket = -1;
    }
}

void Manager::set_hosts(const std::vector<std::string>& hosts) {
    bool newly_wanted = false; // the issuing thread may be asleep for up to a minute
    {
        std::lock_guard lock(m_mutex);
        std::set<std::string> wanted;
        for (const auto& host : hosts)
            if (eligible(host))
                wanted.insert(host);
        for (auto& [name, entry] : m_entries) {
            const bool now = wanted.count(name) > 0;
            newly_wanted = newly_wanted || (now && !entry.wanted);
            entry.wanted = now;
        }
        for (const auto& name : wanted) {
            auto [it, inserted] = m_entries.try_emplace(name);
            if (!inserted)
                continue;
            read_certificate_locked(name, it->second);
            it->second.wanted = true;
            newly_wanted = true;
        }
    }
    if (newly_wanted)
        m_wake.notify_all();
}

std::string Manager::due_locked(std::int64_t now, std::int64_t& wake_at) const {
    wake_at = now + k_idle_check.count();
    for (const auto& [name, entry] : m_entries) {
        if (!entry.wanted && !entry.on_demand && entry.settling == 0)
            continue; // no longer routed: not renewed
        const std::int64_t renew = renew_at(entry);
        const std::int64_t due = std::max(entry.not_after == 0 ? now : renew, entry.next_attempt);
        if (due <= now)
            return name;
        wake_at = std::min(wake_at, due);
    }
    return {};
}

void Manager::run() {
    std::unique_lock lock(m_mutex);
    while (!m_stopping) {
        std::int64_t wake_at = 0;
        const std::string name = due_locked(unix_now(), wake_at);
        if (name.empty()) {
            m_wake.wait_for(lock,
                            std::chrono::seconds(std::max<std::int64_t>(1, wake_at - unix_now())));
            continue;
        }
        lock.unlock();
        attempt(name);
        lock.lock();
    }
}

void Manager::attempt(const std::string& name) {
    const auto started = std::chrono::steady_clock::now();
    {
        std::lock_guard lock(m_mutex);
        Entry& entry = m_entries[name];
        entry.last_attempt = unix_now();
        entry.running = true;
        entry.urgent = false;
    }
    common::log_info("acme: requesting a certificate for " + name + " from " +
                     m_settings.directory);
    auto issued = issue(name);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    {
        std::lock_guard lock(m_mutex);
        Entry& entry = m_entries[name];
        if (issued) {
            entry.failures = 0;
            entry.last_error.clear();
            entry.next_attempt = 0;
            entry.last_renewal = unix_now();
            ++entry.issued_total;
            read_certificate_locked(name, entry);
            common::log_info(fmt::format("acme: certificate for {} issued by {} in {} ms, valid "
                                         "until {}; renewal from {}",
                                         name, entry.issuer, took.count(), when(entry.not_after),
                                         when(renew_at(entry))));
        } else {
            ++entry.failures;
            ++entry.failures_total;
            entry.last_error = issued.error().message;
            auto delay =
                m_settings.retry * (1LL << std::min<std::uint64_t>(entry.failures - 1, 20));
            delay = std::min<std::chrono::seconds>(delay, k_retry_max);
            // A deploy asked while this attempt was under way: it waits for the next one.
            entry.next_attempt = entry.urgent ? 0 : unix_now() + delay.count();
            common::log_warn(fmt::format(
                "acme: no certificate for {}: {}; {} next attempt at {}", name, entry.last_error,
                entry.not_after > unix_now() ? "the current one is served meanwhile;"
                                             : "it is served over plain HTTP meanwhile;",
                when(entry.next_attempt)));
        }
        save_locked();
    }
    if (issued) {
        // Served before it is said: a deploy's "certificate issued" line means
        // the next handshake gets it.
        if (m_reload_proxy)
            m_reload_proxy();
        if (auto served = wait_served(name, *issued, false); !served)
            common::log_warn("acme: " + served.error().message);
    }
    {
        std::lock_guard lock(m_mutex);
        Entry& entry = m_entries[name];
        entry.running = false;
        ++entry.finished;
    }
    m_wake.notify_all();
}

common::Result<std::string> Manager::issue(const std::string& name) {
    const EcKey& account = *m_account;
    ClientOptions options{m_settings.directory, m_settings.ca_file, m_settings.email,
                          m_settings.eab_kid, m_settings.eab_hmac_key};
    options.cancel = &m_cancel;
    Client client(options, account);
    TRY(client.open());
    auto order = client.new_order({name});
    if (!order)
        return order.error();
    for (const auto& url : order->authorizations) {
        auto authz = client.authorization(url);
        if (!authz)
            return authz.error();
        if (authz->status == "valid")
            continue;
        // The challenge: dns-01 for a wildcard, else the first preferred one offered.
        const Challenge* chosen = nullptr;
        std::vector<std::string> order_of = m_settings.challenges;
        if (authz->wildcard)
            order_of = {"dns-01"};
        for (const auto& type : order_of) {
            if (type == "dns-01" && m_settings.dns_hook.empty())
                continue;
            for (const auto& challenge : authz->challenges)
                if (challenge.type == type) {
                    chosen = &challenge;
                    break;
                }
            if (chosen != nullptr)
                break;
        }
        if (chosen == nullptr)
            return make_error(ErrorKind::config,
                              authz->wildcard && m_settings.dns_hook.empty()
                                  ? "a wildcard certificate needs DNS-01: set [acme] dns_hook"
                                  : "the ACME server offers none of the challenges [acme] "
                                    "challenges allows");
        const Challenge challenge = *chosen;
        const std::string key_auth = key_authorization(challenge.token, account);
        const std::string host = authz->identifier;
        std::function<void()> cleanup;
        if (challenge.type == "http-01") {
            if (challenge.token.empty() ||
                challenge.token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                                  "vwxyz0123456789-_") != std::string::npos)
                return make_error(ErrorKind::failed, "the ACME server sent a malformed token");
            const fs::path file = dir() / "http-01" / challenge.token;
            TRY(common::atomic_write_file(file, key_auth, 0644));
            cleanup = [file] { remove_quietly(file); };
        } else if (challenge.type == "tls-alpn-01") {
            auto pair = tls_alpn_certificate(host, key_auth);
            if (!pair)
                return pair.error();
            const fs::path base = dir() / "tls-alpn-01" / host;
            TRY(common::atomic_write_file(base.string() + ".key", pair->key, 0600));
            TRY(common::atomic_write_file(base.string() + ".crt", pair->cert, 0644));
            cleanup = [this, base] {
                remove_quietly(base.string() + ".crt");
                remove_quietly(base.string() + ".key");
                if (m_reload_proxy)
                    m_reload_proxy();
            };
            if (m_reload_proxy)
                m_reload_proxy();
            if (auto served = wait_served(host, pair->cert, true); !served) {
                cleanup();
                return served.error();
            }
        } else { // dns-01
            const std::string record = "_acme-challenge." + host;
            const std::string value = dns01_value(key_auth);
            auto run_hook = [this, record, value](const std::string& action) -> common::Status {
                runtime::StreamingCommand command;
                auto words = common::split_words(m_settings.dns_hook);
                if (!words || words->empty())
                    return make_error(ErrorKind::config, "[acme] dns_hook is not a command");
                command.spawn.argv = *words;
                command.spawn.argv.insert(command.spawn.argv.end(), {action, record, value});
                command.spawn.env = runtime::clean_environment(dir(), {});
                command.spawn.cwd = dir();
                command.timeout = k_hook_timeout;
                std::string output;
                command.on_line = [&output](std::string_view line) {
                    common::log_info("acme: dns_hook: " + std::string(line));
                    if (output.size() < 2000)
                        output += std::string(line) + " ";
                };
                auto result = runtime::run_streaming(command);
                if (!result)
                    return make_error(ErrorKind::failed,
                                      "dns_hook " + action + ": " + result.error().message);
                if (result->outcome != runtime::Outcome::exited || result->status != 0)
                    return make_error(ErrorKind::failed,
                                      fmt::format("dns_hook {} {} failed ({}{}){}", action, record,
                                                  result->outcome == runtime::Outcome::timed_out
                                                      ? "timed out after "
                                                      : "exit ",
                                                  result->outcome == runtime::Outcome::timed_out
                                                      ? std::to_string(k_hook_timeout.count()) + "s"
                                                      : std::to_string(result->status),
                                                  output.empty() ? "" : ": " + output));
                return {};
            };
            TRY(run_hook("add"));
            cleanup = [run_hook] {
                if (auto removed = run_hook("remove"); !removed)
                    common::log_warn("acme: " + removed.error().message);
            };
        }
        common::log_info(fmt::format("acme: {}: {} challenge ready, the CA validates it now", host,
                                     challenge.type));
        auto responded = client.respond(challenge);
        auto result = responded ? client.wait_authorization(url, k_validation_timeout)
                                : common::Result<Authorization>(responded.error());
        cleanup();
        if (!result)
            return result.error();
        if (result->status != "valid")
            return make_error(ErrorKind::failed,
                              fmt::format("{} challenge for {} {}{}", challenge.type, host,
                                          result->status,
                                          result->error.empty() ? "" : ": " + result->error));
    }
    auto key = EcKey::generate();
    if (!key)
        return key.error();
    auto csr = make_csr(*key, {name});
    if (!csr)
        return csr.error();
    auto chain = client.finalize(*order, *csr, k_issue_timeout);
    if (!chain)
        return chain.error();
    auto summary = summarize_certificate(*chain);
    if (!summary)
        return make_error(ErrorKind::failed,
                          "the issued certificate cannot be read: " + summary.error().message);
    // The key first: deploy-proxy reads a pair when the certificate changes.
    const fs::path base = dir() / "certs" / file_stem(name);
    TRY(common::atomic_write_file(base.string() + ".key", key->pem(), 0600));
    TRY(common::atomic_write_file(base.string() + ".crt", *chain, 0644));
    return chain;
}

common::Status Manager::wait_served(const std::string& name, const std::string& cert_pem,
                                    bool alpn_challenge) const {
    // A wildcard is asked for with a name it covers.
    const std::string sni = name.rfind("*.", 0) == 0 ? "certificate-check" + name.substr(1) : name;
    auto where = common::parse_host_port(m_https_address, common::EmptyHost::allowed);
    if (!where)
        return where.error();
    std::string host = where->host;
    if (host.empty() || host == "0.0.0.0")
        host = "127.0.0.1";
    else if (host == "::")
        host = "::1";
    auto wanted = summarize_certificate(cert_pem);
    if (!wanted)
        return wanted.error();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::string last = "no answer";
    while (std::chrono::steady_clock::now() < deadline) {
        // One handshake offering acme-tls/1 for `name`, as the CA will.
        sockaddr_storage address{};
        socklen_t length = 0;
        if (host.find(':') != std::string::npos) {
            auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(static_cast<std::uint16_t>(where->port));
            ::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr);
            length = sizeof(sockaddr_in6);
        } else {
            auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
            v4->sin_family = AF_INET;
            v4->sin_port = htons(static_cast<std::uint16_t>(where->port));
            ::inet_pton(AF_INET, host.c_str(), &v4->sin_addr);
            length = sizeof(sockaddr_in);
        }
        const int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        timeval timeout{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) == 0) {
            SSL_CTX* context = SSL_CTX_new(TLS_client_method());
            SSL* ssl = SSL_new(context);
            static constexpr unsigned char k_alpn[] = {10,  'a', 'c', 'm', 'e', '-',
                                                       't', 'l', 's', '/', '1'};
            if (alpn_challenge)
                SSL_set_alpn_protos(ssl, k_alpn, sizeof k_alpn);
            SSL_set_tlsext_host_name(ssl, sni.c_str());
            SSL_set_fd(ssl, fd);
            if (SSL_connect(ssl) == 1) {
                X509* peer = SSL_get1_peer_certificate(ssl);
                common::OpenSslPtr<BIO> bio(BIO_new(BIO_s_mem()));
                if (peer != nullptr)
                    PEM_write_bio_X509(bio.get(), peer);
                X509_free(peer);
                auto got = summarize_certificate(common::memory_bio_bytes(bio.get()));
                if (got && got->serial == wanted->serial) {
                    SSL_free(ssl);
                    SSL_CTX_free(context);
                    ::close(fd);
                    return {};
                }
                last = "it answered with another certificate";
            } else {
                last = "the handshake failed";
            }
            SSL_free(ssl);
            SSL_CTX_free(context);
        } else {
            last = std::strerror(errno);
        }
        ::close(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return make_error(
        ErrorKind::failed,
        fmt::format(
            "deploy-proxy on {} did not present the {} for {} within 5 s ({})", m_https_address,
            alpn_challenge ? "TLS-ALPN-01 challenge certificate" : "new certificate", name, last));
}

std::vector<std::string> Manager::settle(const std::vector<std::string>& hosts,
                                         std::chrono::milliseconds bound) {
    // Each name waits for an attempt that starts after this call, or for the
    // one under way to succeed (one that fails may have started before the
    // deploy asked: the next one then starts at once).
    struct Wait {
        std::uint64_t start = 0;
        std::uint64_t target = 0;
    };
    std::map<std::string, Wait> waits;
    {
        std::lock_guard lock(m_mutex);
        const std::int64_t now = unix_now();
        for (const auto& host : hosts) {
            if (!eligible(host))
                continue;
            auto [it, inserted] = m_entries.try_emplace(host);
            Entry& entry = it->second;
            if (inserted) // a file from before this agent knew the name
                read_certificate_locked(host, entry);
            if (entry.not_after > now && renew_at(entry) > now)
                continue;           // valid: nothing to say
            entry.next_attempt = 0; // a deploy tries now, whatever the backoff
            ++entry.settling;
            if (entry.running)
                entry.urgent = true;
            waits[host] = {entry.finished, entry.finished + (entry.running ? 2 : 1)};
        }
    }
    if (waits.empty())
        return {};
    m_wake.notify_all();
    std::unique_lock lock(m_mutex);
    auto done = [&](const std::string& name, const Wait& wait) {
        const Entry& entry = m_entries[name];
        return entry.finished >= wait.target ||
               (entry.finished > wait.start && entry.failures == 0);
    };
    m_wake.wait_for(lock, bound, [&] {
        return m_stopping || std::all_of(waits.begin(), waits.end(), [&](const auto& item) {
                   return done(item.first, item.second);
               });
    });
    std::vector<std::string> lines;
    for (const auto& [name, wait] : waits) {
        Entry& entry = m_entries[name];
        --entry.settling;
        if (!done(name, wait))
            lines.push_back(fmt::format("warning: the certificate for {} is still being issued; "
                                        "it is served over plain HTTP until then (deployctl "
                                        "certs)",
                                        name));
        else if (entry.failures == 0)
            lines.push_back(fmt::format("https://{}: certificate issued by {}, valid until {}",
                                        name, entry.issuer, when(entry.not_after)));
        else
            lines.push_back(fmt::format(
                "warning: no certificate for {}: {}; {}, next attempt at {} (deployctl certs)",
                name, entry.last_error,
                entry.not_after > unix_now() ? "the current one is served until it expires"
                                             : "it is served over plain HTTP meanwhile",
                when(entry.next_attempt)));
    }
    return lines;
}

std::vector<CertificateStatus> Manager::list() const {
    std::lock_guard lock(m_mutex);
    std::vector<CertificateStatus> out;
    const std::int64_t now = unix_now();
    for (const auto& [name, entry] : m_entries) {
        CertificateStatus status;
        status.name = name;
        status.on_demand = entry.on_demand;
        status.issuer = entry.issuer;
        status.not_before = entry.not_before;
        status.not_after = entry.not_after;
        status.renew_at = renew_at(entry);
        status.last_renewal = entry.last_renewal;
        status.last_error = entry.last_error;
        status.failures = entry.failures;
        status.failures_total = entry.failures_total;
        status.issued_total = entry.issued_total;
        const bool in_use = entry.wanted || entry.on_demand;
        if (!in_use)
            status.state = "unused";
        else if (entry.not_after > now)
            status.state =
                entry.failures > 0 && now >= status.renew_at ? "renewal failing" : "valid";
        else if (entry.not_after != 0)
            status.state = "expired";
        else
            status.state = entry.failures > 0 ? "failed" : "pending";
        if (in_use)
            status.next_attempt =
                std::max(entry.not_after == 0 ? now : status.renew_at, entry.next_attempt);
        out.push_back(std::move(status));
    }
    return out;
}

std::string Manager::metrics() const {
    const auto all = list();
    std::string out;
    auto family = [&](const char* name, const char* type, const char* help, auto value) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
        for (const auto& c : all)
            out += fmt::format("{}{{name=\"{}\"}} {}\n", name, c.name, value(c));
    };
    family("deploy_acme_certificate_expiry_timestamp_seconds", "gauge",
           "When each name's certificate expires (unix seconds; 0: none yet).",
           [](const CertificateStatus& c) { return c.not_after; });
    family("deploy_acme_issuance_failures_total", "counter",
           "Failed issuance or renewal attempts per name since the state began.",
           [](const CertificateStatus& c) { return c.failures_total; });
    family("deploy_acme_certificates_issued_total", "counter",
           "Certificates issued (first or renewal) per name since the state began.",
           [](const CertificateStatus& c) { return c.issued_total; });
    return out;
}

// --- on-demand ---------------------------------------------------------------

common::Status Manager::open_socket() {
    auto fd = runtime::bind_unix_datagram(m_data_dir.proxy_dir() / "certificate.sock");
    if (!fd)
        return fd.error();
    m_socket = *fd;
    return {};
}

void Manager::socket_loop() {
    for (;;) {
        {
            std::lock_guard lock(m_mutex);
            if (m_stopping)
                return;
        }
        pollfd ready{m_socket, POLLIN, 0};
        if (::poll(&ready, 1, 200) <= 0)
            continue;
        char buffer[300];
        const auto n = ::recv(m_socket, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n <= 0)
            continue;
        on_demand(common::ascii_lower(std::string_view(buffer, static_cast<std::size_t>(n))));
    }
}

common::Result<bool> Manager::ask(const std::string& name) const {
    CURL* curl = curl_easy_init();
    if (curl == nullptr)
        return make_error(ErrorKind::internal, "cannot initialize libcurl");
    char* escaped = curl_easy_escape(curl, name.c_str(), static_cast<int>(name.size()));
    const std::string url = m_settings.ask +
                            (m_settings.ask.find('?') == std::string::npos ? "?" : "&") +
                            "domain=" + escaped;
    curl_free(escaped);
    std::string ignored;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION,
        +[](char*, std::size_t size, std::size_t count, void*) { return size * count; });
    const CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    if (code != CURLE_OK)
        return make_error(ErrorKind::connection,
                          fmt::format("cannot reach [acme] ask {}: {}", m_settings.ask,
                                      curl_easy_strerror(code)));
    return status == 200;
}

void Manager::on_demand(const std::string& name) {
    if (!m_settings.on_demand || !eligible(name) || name.rfind("*.", 0) == 0)
        return;
    const auto now = std::chrono::steady_clock::now();
    {
        std::lock_guard lock(m_mutex);
        if (auto it = m_entries.find(name);
            it != m_entries.end() &&
            (it->second.wanted || it->second.on_demand || it->second.settling > 0 ||
             it->second.running || it->second.not_after > unix_now()))
            return; // known: issued, being issued, or its attempts and backoff run already
        if (auto it = m_refused.find(name); it != m_refused.end() && now < it->second)
            return;
        std::erase_if(m_on_demand_issued,
                      [&](auto at) { return now - at >= std::chrono::minutes(1); });
        if (static_cast<int>(m_on_demand_issued.size()) >= k_on_demand_per_minute) {
            common::log_warn("acme: on-demand certificate for " + name +
                             " not requested: more than " + std::to_string(k_on_demand_per_minute) +
                             " new names this minute");
            return;
        }
    }
    auto allowed = ask(name);
    std::lock_guard lock(m_mutex);
    if (!allowed || !*allowed) {
        m_refused[name] = now + k_refusal_memory;
        common::log_info(
            "acme: on-demand certificate for " + name + " refused: " +
            (allowed ? m_settings.ask + " did not answer 200" : allowed.error().message));
        return;
    }
    m_on_demand_issued.push_back(now);
    Entry& entry = m_entries[name];
    entry.on_demand = true;
    entry.next_attempt = 0;
    common::log_info("acme: on-demand certificate for " + name + " allowed by " + m_settings.ask);
    m_wake.notify_all();
}

} // namespace agent::acme
