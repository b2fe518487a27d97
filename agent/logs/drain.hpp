#pragma once
// [logs] drain (docs/deploy-toml.md, docs/logs.md): every line of an app's logs
// (its processes' output, its build and release output, its access log)
// shipped to a syslog receiver, as RFC 5424 messages framed by octet counting
// (RFC 6587), over TCP or TLS.
//
// One thread per app. Every 100 ms it reads what was added to the app's log
// files (apps/APP/logs) and appends each new line, framed, to the drain's
// queue on disk (apps/APP/drain/queue), then sends the queue to the receiver.
// The receiver being away, slow or restarting loses nothing: the queue holds
// up to drain_queue bytes; while it is full and the receiver is connected
// (slower than a burst), lines wait in their log files; while it is full and
// the receiver cannot be reached, lines that come are dropped, and counted. A message counts as
// delivered once the receiver's TCP acknowledged it and the connection then stayed up for a second;
// a connection that breaks before that has everything since the last delivered message sent again
// on the next one, so a line may arrive twice, never not at all (at least once). Where it is in
// each file and in the queue is kept in apps/APP/drain/state.json, so an agent restart goes on
// where it stopped.

#include <common/config.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace agent::logs {

struct DrainStats {
    std::string url;
    bool connected = false;
    std::uint64_t queued_bytes = 0; // in the queue, not yet delivered
    std::uint64_t delivered = 0;    // messages
    std::uint64_t dropped = 0;      // lines that came while the queue was full
    std::string last_error;         // why the last connection failed or ended ("": none)
};

// A log line as one syslog message.
struct SyslogMessage {
    std::string timestamp; // RFC 3339 ("" : now)
    std::string hostname;
    std::string app;
    std::string process; // PROCID: web, worker, cron.NAME, build, access
    std::string release; // MSGID: v4 ("" : -)
    std::string text;
    int severity = 6; // informational
};
// "LEN <PRI>1 TIMESTAMP HOSTNAME APP PROCID MSGID - TEXT" (facility user).
std::string syslog_frame(const SyslogMessage& message);

// Which process and release a file of apps/APP/logs holds the lines of, and
// how to read them; nullopt for a file that is no log (rotated generations
// are read once their file rotated, through the file they came from).
struct LogFileKind {
    enum class Form { output, events, access } form = Form::output;
    std::string process;
    std::string release;
};
std::optional<LogFileKind> classify_log_file(const std::string& name);

class Drain {
  public:
    // Ships the logs of `app` in `logs_dir`, keeping its queue and state in `dir`.
    Drain(std::string app, std::filesystem::path logs_dir, std::filesystem::path dir,
          std::string url, common::DrainTarget target, std::uint64_t queue_bytes);
    ~Drain(); // stops its thread; what is queued stays for the next start
    Drain(const Drain&) = delete;
    Drain& operator=(const Drain&) = delete;

    DrainStats stats() const;
    const std::string& url() const { return m_url; }
    std::uint64_t queue_limit() const { return m_queue_limit; }

  private:
    struct Impl;
    std::string m_url;
    std::uint64_t m_queue_limit;
    std::unique_ptr<Impl> m_impl;
};

} // namespace agent::logs
