#include <agent/logs/drain.hpp>
#include <agent/logs/follow.hpp>
#include <agent/logs/rotating_file.hpp>
#include <agent/logs/stamp.hpp>
#include <agent/runtime/socket_io.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>
#include <common/timestamp.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <linux/sockios.h>
#include <map>
#include <netdb.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace agent::logs {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using common::ErrorKind;
using common::make_error;

namespace {

constexpr auto k_poll = 100ms;
// A message counts as delivered once acknowledged and the connection stayed up this long.
constexpr auto k_confirm = 1s;
constexpr auto k_io_timeout = 5s;                        // connect, handshake, a stalled send
constexpr std::uint64_t k_read_budget = 4 * 1024 * 1024; // per file per round
constexpr std::size_t k_send_chunk = 256 * 1024;
constexpr auto k_max_backoff = 2s;

// A header field of a syslog message: printable ASCII without spaces, at most
// `max` of it; "-" when empty (RFC 5424 NILVALUE).
std::string header_field(std::string_view value, std::size_t max) {
    std::string out;
    for (char c : value.substr(0, max))
        out += c > 32 && c < 127 ? c : '_';
    return out.empty() ? "-" : out;
}

bool is_release_id(std::string_view id) {
    return id.size() >= 2 && id[0] == 'v' &&
           id.find_first_not_of("0123456789", 1) == std::string_view::npos;
}

std::string hostname() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || !name[0])
        return "-";
    return name;
}

std::string ssl_error() {
    const unsigned long code = ERR_get_error();
    if (!code)
        return "the connection failed";
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    ERR_clear_error();
    return text;
}

// One connection to the receiver: a non-blocking TCP socket, TLS over it for syslog+tls.
class Connection {
  public:
    static common::Result<std::unique_ptr<Connection>> open(const common::DrainTarget& target,
                                                            SSL_CTX* tls) {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        const auto port = std::to_string(target.port);
        if (int rc = ::getaddrinfo(target.host.c_str(), port.c_str(), &hints, &found); rc != 0)
            return make_error(ErrorKind::connection,
                              fmt::format("cannot resolve {}: {}", target.host, gai_strerror(rc)));
        std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, ::freeaddrinfo);
        std::string why = "no address";
        const auto deadline = std::chrono::steady_clock::now() + k_io_timeout;
        for (auto* a = found; a; a = a->ai_next) {
            const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0)
                continue;
            auto connection = std::unique_ptr<Connection>(new Connection(fd));
            if (auto error = runtime::connect_error(fd, deadline, a->ai_addr, a->ai_addrlen);
                !error.empty()) {
                why = std::move(error);
                continue;
            }
            if (tls)
                if (auto st = connection->handshake(tls, target, deadline); !st)
                    return st.error();
            return connection;
        }
        return make_error(ErrorKind::connection,
                          fmt::format("cannot connect to {}:{}: {}", target.host, port, why));
    }

    ~Connection() {
        if (m_ssl)
            SSL_free(m_ssl);
        ::close(m_fd);
    }

    common::Status send(std::string_view data) {
        const auto deadline = runtime::SocketClock::now() + k_io_timeout;
        const auto stalled = [] {
            return make_error(ErrorKind::connection, "the receiver took nothing for 5 s");
        };
        if (!m_ssl) {
            if (runtime::send_all(m_fd, data, deadline))
                return {};
            if (runtime::SocketClock::now() >= deadline)
                return stalled();
            return make_error(ErrorKind::connection,
                              fmt::format("sending: {}", std::strerror(errno)));
        }
        while (!data.empty()) {
            const int n = SSL_write(m_ssl, data.data(), static_cast<int>(data.size()));
            if (n > 0) {
                data.remove_prefix(static_cast<std::size_t>(n));
                continue;
            }
            const int error = SSL_get_error(m_ssl, n);
            if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE)
                return make_error(ErrorKind::connection, "sending: " + ssl_error());
            if (!runtime::wait_for(m_fd, error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
                return stalled();
        }
        return {};
    }

    // False once the receiver closed the connection or it broke. A receiver
    // sends nothing; TLS records it sends (session tickets) are read and dropped.
    bool healthy() {
        pollfd p{m_fd, POLLIN | POLLRDHUP, 0};
        if (::poll(&p, 1, 0) <= 0)
            return true;
        if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
            return false;
        char scratch[4096];
        if (m_ssl) {
            const int n = SSL_read(m_ssl, scratch, sizeof scratch);
            if (n > 0)
                return true;
            const int error = SSL_get_error(m_ssl, n);
            return error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE;
        }
        const ssize_t n = ::recv(m_fd, scratch, sizeof scratch, MSG_DONTWAIT);
        return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
    }

    // Bytes sent that the receiver's TCP has not acknowledged yet.
    std::uint64_t unacknowledged() const {
        int queued = 0;
        if (::ioctl(m_fd, SIOCOUTQ, &queued) != 0)
            return 1;
        return static_cast<std::uint64_t>(queued);
    }

  private:
    explicit Connection(int fd) : m_fd(fd) {}

    common::Status handshake(SSL_CTX* tls, const common::DrainTarget& target,
                             std::chrono::steady_clock::time_point deadline) {
        m_ssl = SSL_new(tls);
        if (!m_ssl || SSL_set_fd(m_ssl, m_fd) != 1)
            return make_error(ErrorKind::internal, "TLS: " + ssl_error());
        SSL_set_mode(m_ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        in6_addr ip{};
        const bool numeric = ::inet_pton(AF_INET, target.host.c_str(), &ip) == 1 ||
                             ::inet_pton(AF_INET6, target.host.c_str(), &ip) == 1;
        if (numeric) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(m_ssl), target.host.c_str());
        } else {
            SSL_set_tlsext_host_name(m_ssl, target.host.c_str());
            SSL_set1_host(m_ssl, target.host.c_str());
        }
        for (;;) {
            const int rc = SSL_connect(m_ssl);
            if (rc == 1)
                return {};
            const int error = SSL_get_error(m_ssl, rc);
            const short wait = error == SSL_ERROR_WANT_READ    ? POLLIN
                               : error == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                               : 0;
            if (!wait) {
                const long verify = SSL_get_verify_result(m_ssl);
                std::string why = verify != X509_V_OK ? std::string("its certificate: ") +
                                                            X509_verify_cert_error_string(verify)
                                                      : ssl_error();
                return make_error(ErrorKind::connection,
                                  fmt::format("TLS with {}:{}: {}", target.host, target.port, why));
            }
            if (!runtime::wait_for(m_fd, wait, deadline))
                return make_error(
                    ErrorKind::connection,
                    fmt::format("TLS with {}:{}: no answer within 5 s", target.host, target.port));
        }
    }

    int m_fd;
    SSL* m_ssl = nullptr;
};

struct Cursor {
    std::uint64_t inode = 0;
    std::uint64_t offset = 0;
    bool operator==(const Cursor&) const = default;
};

// Where a file's previous generation went when it rotated: PATH.1.zst for an
// app's output, access.ndjson.1 for the access log.
fs::path previous_generation(const fs::path& file, const LogFileKind& kind) {
    if (kind.form == LogFileKind::Form::access) {
        auto rotated = file;
        rotated += ".1";
        return rotated;
    }
    return rotated_path(file, 1);
}

} // namespace

std::string syslog_frame(const SyslogMessage& m) {
    const int pri = 1 * 8 + std::clamp(m.severity, 0, 7); // facility user
    const std::string timestamp =
        m.timestamp.empty() ? common::format_micros(common::now_micros()) : m.timestamp;
    std::string message = fmt::format("<{}>1 {} {} {} {} {} - ", pri, header_field(timestamp, 64),
                                      header_field(m.hostname, 255), header_field(m.app, 48),
                                      header_field(m.process, 128), header_field(m.release, 32));
    message += m.text;
    return fmt::format("{} ", message.size()) + message;
}

std::optional<LogFileKind> classify_log_file(const std::string& name) {
    if (name == "access.ndjson")
        return LogFileKind{LogFileKind::Form::access, "access", ""};
    constexpr std::string_view k_events = ".ndjson", k_log = ".log";
    auto ends_with = [&name](std::string_view suffix) {
        return name.size() > suffix.size() &&
               name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with(k_events)) {
        const auto id = name.substr(0, name.size() - k_events.size());
        if (is_release_id(id))
            return LogFileKind{LogFileKind::Form::events, "", id};
        return std::nullopt;
    }
    if (!ends_with(k_log))
        return std::nullopt;
    const auto base = name.substr(0, name.size() - k_log.size());
    if (base.rfind("cron.", 0) == 0 && base.size() > 5)
        return LogFileKind{LogFileKind::Form::output, base, ""};
    const auto dot = base.find('.');
    if (dot == std::string::npos || dot + 1 == base.size() || !is_release_id(base.substr(0, dot)))
        return std::nullopt;
    const auto process = base.substr(dot + 1);
    return LogFileKind{LogFileKind::Form::output, process == "app" ? "web" : process,
                       base.substr(0, dot)};
}

struct Drain::Impl {
    std::string app;
    fs::path logs_dir, dir;
    common::DrainTarget target;
    std::uint64_t queue_limit;
    std::string host = hostname();

    // Guarded by `mutex`: what stats() reads, and stopping.
    mutable std::mutex mutex;
    std::condition_variable wake;
    bool stopping = false;
    DrainStats stats;

    // The thread's own.
    std::map<std::string, Cursor> cursors; // by file name in logs_dir
    std::uint64_t committed = 0;           // queue offset: delivered up to here
    std::uint64_t sent = 0;                // queue offset: written to the connection up to here
    std::uint64_t queue_size = 0;
    struct Written {
        std::uint64_t end;
        std::uint64_t messages;
        std::chrono::steady_clock::time_point at;
    };
    std::deque<Written> in_flight;
    std::unique_ptr<Connection> connection;
    bool away = false; // the last attempt to reach the receiver failed
    std::chrono::steady_clock::time_point next_attempt{};
    std::chrono::milliseconds backoff{250};
    bool state_dirty = false;
    std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> tls{nullptr, SSL_CTX_free};
    std::thread thread;

    fs::path queue_file() const { return dir / "queue"; }
    fs::path state_file() const { return dir / "state.json"; }

    void set_error(const std::string& error) {
        std::lock_guard lock(mutex);
        if (stats.last_error != error)
            common::log_warn(fmt::format("drain of {} to {}: {}", app, stats.url, error));
        stats.last_error = error;
    }

    void load_state() {
        std::error_code ec;
        queue_size = fs::file_size(queue_file(), ec);
        if (ec)
            queue_size = 0;
        auto text = common::read_file(state_file());
        auto state = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
        if (state.is_object()) {
            try {
                read_state(state);
                return;
            } catch (const nlohmann::json::exception&) {
                // Not what save_state writes: start afresh, as a new drain.
                cursors.clear();
                committed = 0;
            }
        }
        // A new drain starts at the end of what the logs hold now.
        for (const auto& entry : fs::directory_iterator(logs_dir, ec)) {
            const auto name = entry.path().filename().string();
            struct stat st {};
            if (classify_log_file(name) && ::stat(entry.path().c_str(), &st) == 0)
                cursors[name] = {static_cast<std::uint64_t>(st.st_ino),
                                 static_cast<std::uint64_t>(st.st_size)};
        }
        state_dirty = true;
    }

    void read_state(const nlohmann::json& state) {
        committed = std::min<std::uint64_t>(state.value("committed", 0ull), queue_size);
        std::lock_guard lock(mutex);
        stats.delivered = state.value("delivered", 0ull);
        stats.dropped = state.value("dropped", 0ull);
        if (auto it = state.find("cursors"); it != state.end() && it->is_object())
            for (const auto& [name, cursor] : it->items())
                if (cursor.is_array() && cursor.size() == 2)
                    cursors[name] = {cursor[0].get<std::uint64_t>(),
                                     cursor[1].get<std::uint64_t>()};
    }

    void save_state() {
        nlohmann::json names = nlohmann::json::object();
        for (const auto& [name, cursor] : cursors)
            names[name] = {cursor.inode, cursor.offset};
        nlohmann::json state{{"committed", committed}, {"cursors", std::move(names)}};
        {
            std::lock_guard lock(mutex);
            state["delivered"] = stats.delivered;
            state["dropped"] = stats.dropped;
        }
        if (auto written = common::atomic_write_file(state_file(), state.dump()); !written)
            set_error("cannot save its state: " + written.error().message);
        else
            state_dirty = false;
    }

    // Appends framed messages to the queue file, or counts them dropped when
    // the queue holds queue_limit bytes not yet delivered.
    void enqueue(std::string& frames, std::uint64_t messages, std::uint64_t dropped) {
        if (frames.empty() && dropped == 0)
            return;
        if (!frames.empty()) {
            const int fd =
                ::open(queue_file().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            bool written = fd >= 0;
            std::string_view rest = frames;
            while (written && !rest.empty()) {
                const ssize_t n = ::write(fd, rest.data(), rest.size());
                if (n < 0 && errno == EINTR)
                    continue;
                written = n > 0;
                if (written)
                    rest.remove_prefix(static_cast<std::size_t>(n));
            }
            if (fd >= 0)
                ::close(fd);
            if (!written) {
                set_error(fmt::format("cannot write its queue: {}", std::strerror(errno)));
                // What was not written is lost, and counted.
                dropped += messages;
                // The queue may end in a partial message: cut it back.
                if (::truncate(queue_file().c_str(), static_cast<off_t>(queue_size)) != 0)
                    common::log_warn("drain: cannot cut its queue back");
            } else {
                queue_size += frames.size();
            }
        }
        if (dropped) {
            std::lock_guard lock(mutex);
            stats.dropped += dropped;
        }
        frames.clear();
    }

    // The lines of `text` (complete ones; the rest stays for the next round),
    // as messages in `frames`. Returns the bytes consumed. A full queue: with
    // `can_wait`, the lines wait in their file for the next round (the receiver
    // is there, only slower than a burst); else they are dropped, and counted.
    std::uint64_t frame_lines(std::string_view text, const LogFileKind& kind, std::string& frames,
                              std::uint64_t& messages, std::uint64_t& dropped,
                              bool can_wait = false) {
        std::uint64_t used = 0;
        while (true) {
            const auto newline = text.find('\n', used);
            if (newline == std::string_view::npos)
                break;
            const auto line = text.substr(used, newline - used);
            auto message = line.empty() ? std::nullopt : to_message(line, kind);
            if (!message) {
                used = newline + 1;
                continue;
            }
            const auto frame = syslog_frame(*message);
            if (queue_size - committed + frames.size() + frame.size() > queue_limit) {
                if (can_wait)
                    break;
                ++dropped;
                used = newline + 1;
                continue;
            }
            used = newline + 1;
            frames += frame;
            ++messages;
        }
        return used;
    }

    // A line as the message shipped for it; nullopt for one that is not
    // shipped (an event other than "log") or that cannot be read.
    std::optional<SyslogMessage> to_message(std::string_view line, const LogFileKind& kind) const {
        try {
            return to_message_or_throw(line, kind);
        } catch (const nlohmann::json::exception&) {
            return std::nullopt; // a field of an unexpected type
        }
    }

    std::optional<SyslogMessage> to_message_or_throw(std::string_view line,
                                                     const LogFileKind& kind) const {
        SyslogMessage m{"", host, app, kind.process, kind.release, "", 6};
        switch (kind.form) {
        case LogFileKind::Form::output: {
            const auto [stamp, text] = split_stamp(line);
            m.timestamp = std::string(stamp);
            m.text = std::string(text);
            return m;
        }
        case LogFileKind::Form::events: {
            const auto event = nlohmann::json::parse(line, nullptr, false);
            if (!event.is_object() || event.value("event", "") != "log")
                return std::nullopt;
            m.timestamp = event.value("ts", "");
            m.process = event.value("stream", "build");
            m.text = event.value("line", "");
            return m;
        }
        case LogFileKind::Form::access: {
            const auto record = nlohmann::json::parse(line, nullptr, false);
            if (record.is_object()) {
                m.timestamp = record.value("time", "");
                m.release = record.value("release", "");
                const int status = record.value("status", 0);
                m.severity = status >= 500 || status == 0 ? 4 : 6; // warning for 5xx
            }
            m.text = std::string(line);
            return m;
        }
        }
        return std::nullopt;
    }

    // Reads what was added to the app's log files since the last round.
    void collect() {
        std::error_code ec;
        std::map<std::string, Cursor> seen;
        std::string frames;
        std::uint64_t messages = 0, dropped = 0;
        fs::directory_iterator entries(logs_dir, ec);
        if (ec)
            return; // no logs yet, or unreadable for now: the cursors stay as they are
        for (const auto& entry : entries) {
            const auto name = entry.path().filename().string();
            const auto kind = classify_log_file(name);
            struct stat st {};
            if (!kind || ::stat(entry.path().c_str(), &st) != 0)
                continue;
            const auto inode = static_cast<std::uint64_t>(st.st_ino);
            const auto size = static_cast<std::uint64_t>(st.st_size);
            Cursor cursor{inode, 0};
            if (auto it = cursors.find(name); it != cursors.end()) {
                cursor = it->second;
                if (cursor.inode != inode) {
                    // Rotated since: the rest of the old file is in its previous generation.
                    read_rest(previous_generation(entry.path(), *kind), cursor.offset, *kind,
                              frames, messages, dropped);
                    cursor = {inode, 0};
                } else if (size < cursor.offset) {
                    cursor.offset = 0; // truncated: read again from its start
                }
            }
            if (size > cursor.offset) {
                const auto want = std::min<std::uint64_t>(size - cursor.offset, k_read_budget);
                std::string text(want, '\0');
                const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
                const ssize_t got =
                    fd < 0 ? -1 : ::pread(fd, text.data(), want, static_cast<off_t>(cursor.offset));
                if (fd >= 0)
                    ::close(fd);
                if (got > 0) {
                    text.resize(static_cast<std::size_t>(got));
                    auto used = frame_lines(text, *kind, frames, messages, dropped, !away);
                    if (used == 0 && text.size() >= k_max_line_length &&
                        text.find('\n') == std::string::npos) // one line too long
                        used = frame_lines(text.substr(0, k_max_line_length) + "\n", *kind, frames,
                                           messages, dropped) -
                               1;
                    cursor.offset += used;
                }
            }
            seen[name] = cursor;
        }
        enqueue(frames, messages, dropped);
        if (seen != cursors) {
            cursors = std::move(seen);
            state_dirty = true;
        }
    }

    // The lines of a rotated generation from `offset` (of its content) on.
    void read_rest(const fs::path& generation, std::uint64_t offset, const LogFileKind& kind,
                   std::string& frames, std::uint64_t& messages, std::uint64_t& dropped) {
        std::uint64_t at = 0;
        std::string pending;
        (void)read_log_pieces(generation, [&](std::string_view piece) {
            if (at + piece.size() <= offset) {
                at += piece.size();
                return true;
            }
            const auto skip = offset > at ? offset - at : 0;
            pending.append(piece.substr(static_cast<std::size_t>(skip)));
            at += piece.size();
            const auto used = frame_lines(pending, kind, frames, messages, dropped);
            pending.erase(0, static_cast<std::size_t>(used));
            return true;
        });
        if (!pending.empty()) {
            pending += '\n';
            frame_lines(pending, kind, frames, messages, dropped);
        }
    }

    void disconnect(const std::string& why) {
        away = !connection; // a connect that failed; a connection that broke is not (yet)
        connection.reset();
        in_flight.clear();
        sent = committed; // what was not confirmed goes again
        next_attempt = std::chrono::steady_clock::now() + backoff;
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, k_max_backoff);
        set_error(why);
        std::lock_guard lock(mutex);
        stats.connected = false;
    }

    // Sends what is queued and not yet sent; confirms what was sent long enough ago.
    void ship() {
        const auto now = std::chrono::steady_clock::now();
        if (!connection) {
            if (committed == queue_size || now < next_attempt)
                return;
            auto opened = Connection::open(target, tls.get());
            if (!opened) {
                disconnect(opened.error().message);
                return;
            }
            connection = std::move(*opened);
            away = false;
            backoff = 250ms;
            sent = committed;
            std::lock_guard lock(mutex);
            stats.connected = true;
            stats.last_error.clear();
        }
        if (!connection->healthy()) {
            disconnect("the receiver closed the connection");
            return;
        }
        confirm(now);
        if (sent < queue_size)
            send_queued(now);
        compact();
    }

    void confirm(std::chrono::steady_clock::time_point now) {
        if (in_flight.empty())
            return;
        // What the receiver's TCP acknowledged (with TLS, at least that: its
        // records are larger than the text they carry).
        const auto unacknowledged = connection->unacknowledged();
        const auto acknowledged = sent > unacknowledged ? sent - unacknowledged : 0;
        std::uint64_t messages = 0;
        while (!in_flight.empty() && in_flight.front().end <= acknowledged &&
               now - in_flight.front().at >= k_confirm) {
            committed = in_flight.front().end;
            messages += in_flight.front().messages;
            in_flight.pop_front();
        }
        if (messages) {
            std::lock_guard lock(mutex);
            stats.delivered += messages;
            state_dirty = true;
        }
    }

    void send_queued(std::chrono::steady_clock::time_point now) {
        const int fd = ::open(queue_file().c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            set_error(fmt::format("cannot read its queue: {}", std::strerror(errno)));
            return;
        }
        std::string chunk(
            static_cast<std::size_t>(std::min<std::uint64_t>(queue_size - sent, k_send_chunk)),
            '\0');
        const ssize_t got = ::pread(fd, chunk.data(), chunk.size(), static_cast<off_t>(sent));
        ::close(fd);
        if (got <= 0)
            return;
        chunk.resize(static_cast<std::size_t>(got));
        // Whole messages only: "LEN " then LEN bytes each.
        std::size_t whole = 0;
        std::uint64_t messages = 0;
        while (whole < chunk.size()) {
            const auto space = chunk.find(' ', whole);
            if (space == std::string::npos || space - whole > 10)
                break;
            const auto length = std::strtoull(chunk.c_str() + whole, nullptr, 10);
            if (space + 1 + length > chunk.size())
                break;
            whole = space + 1 + length;
            ++messages;
        }
        if (whole == 0 && chunk.size() == k_send_chunk)
            whole = chunk.size(); // a message longer than a chunk: sent in pieces
        if (whole == 0)
            return;
        if (auto st = connection->send(std::string_view(chunk).substr(0, whole)); !st) {
            disconnect(st.error().message);
            return;
        }
        sent += whole;
        in_flight.push_back({sent, messages, now});
    }

    // Once 4 MiB of the queue were delivered, the queue starts over with
    // what was not: a drain that never catches up completely still keeps its
    // file small. The state says "delivered up to 0" before the new file
    // replaces the old one: a crash in between sends some lines twice, never
    // skips one.
    void compact() {
        constexpr std::uint64_t k_compact = 4 * 1024 * 1024;
        if (committed < k_compact)
            return;
        const auto next = dir / "queue.next";
        std::string rest;
        if (committed < queue_size) {
            const int fd = ::open(queue_file().c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return;
            rest.resize(static_cast<std::size_t>(queue_size - committed));
            const ssize_t got =
                ::pread(fd, rest.data(), rest.size(), static_cast<off_t>(committed));
            ::close(fd);
            if (got != static_cast<ssize_t>(rest.size()))
                return;
        }
        if (auto written = common::atomic_write_file(next, rest); !written) {
            set_error("cannot compact its queue: " + written.error().message);
            return;
        }
        const auto shift = committed;
        committed = 0;
        save_state();
        std::error_code ec;
        fs::rename(next, queue_file(), ec);
        if (ec) {
            committed = shift;
            save_state();
            return;
        }
        queue_size -= shift;
        sent -= shift;
        for (auto& written : in_flight)
            written.end -= shift;
    }

    // Before the thread starts: a drain just made (its settings changed, the agent
    // started) reports what its queue holds from the first status on, not 0.
    void open_state() {
        std::error_code ec;
        fs::create_directories(dir, ec);
        load_state();
        std::lock_guard lock(mutex);
        stats.queued_bytes = queue_size - committed;
    }

    void run() {
        if (target.tls) {
            tls.reset(SSL_CTX_new(TLS_client_method()));
            if (tls) {
                SSL_CTX_set_min_proto_version(tls.get(), TLS1_2_VERSION);
                SSL_CTX_set_verify(tls.get(), SSL_VERIFY_PEER, nullptr);
                const int loaded =
                    target.ca_file.empty()
                        ? SSL_CTX_set_default_verify_paths(tls.get())
                        : SSL_CTX_load_verify_locations(tls.get(), target.ca_file.c_str(), nullptr);
                if (loaded != 1)
                    set_error("cannot load the CA certificates" +
                              (target.ca_file.empty() ? std::string() : " of " + target.ca_file) +
                              ": " + ssl_error());
            }
        }
        auto last_save = std::chrono::steady_clock::now();
        std::unique_lock lock(mutex);
        while (!stopping) {
            lock.unlock();
            collect();
            if (!target.tls || tls)
                ship();
            {
                std::lock_guard stats_lock(mutex);
                stats.queued_bytes = queue_size - committed;
            }
            const auto now = std::chrono::steady_clock::now();
            if (state_dirty && now - last_save >= 1s) {
                save_state();
                last_save = now;
            }
            lock.lock();
            wake.wait_for(lock, k_poll, [this] { return stopping; });
        }
        lock.unlock();
        if (state_dirty)
            save_state();
    }
};

Drain::Drain(std::string app, fs::path logs_dir, fs::path dir, std::string url,
             common::DrainTarget target, std::uint64_t queue_bytes)
    : m_url(url), m_queue_limit(queue_bytes), m_impl(std::make_unique<Impl>()) {
    m_impl->app = std::move(app);
    m_impl->logs_dir = std::move(logs_dir);
    m_impl->dir = std::move(dir);
    m_impl->target = std::move(target);
    m_impl->queue_limit = queue_bytes;
    m_impl->stats.url = std::move(url);
    m_impl->open_state();
    m_impl->thread = std::thread([impl = m_impl.get()] { impl->run(); });
}

Drain::~Drain() {
    {
        std::lock_guard lock(m_impl->mutex);
        m_impl->stopping = true;
    }
    m_impl->wake.notify_all();
    m_impl->thread.join();
}

DrainStats Drain::stats() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->stats;
}

} // namespace agent::logs
