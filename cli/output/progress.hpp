#pragma once
// What a terminal gets and a log does not: a status line at the bottom that
// redraws in place (upload progress bar, deployment phase), erased before
// every normal line and at exit. Only the human printer uses it, and only
// when stdout is a terminal; the formatting helpers are pure for the tests.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace cli::output {

// Columns of the terminal on `fd` (ioctl TIOCGWINSZ), or nullopt if it is none.
std::optional<std::size_t> terminal_width(int fd);

// Columns `text` takes on a terminal: escape sequences (ESC [ ... letter) take
// none, a UTF-8 character takes one.
std::size_t visible_width(std::string_view text);
// `text` cut to at most `width` columns, escape sequences kept whole; when cut,
// it ends with "…" and a colour reset if it contained any escape sequence.
std::string truncate_to_width(std::string_view text, std::size_t width);

// Average rate in bytes per second, 0 before any time passed.
double transfer_rate(std::uint64_t bytes, std::chrono::milliseconds elapsed);
// Time left at `rate` for the rest of `total`; nullopt while the rate is unknown.
std::optional<std::chrono::seconds> eta(std::uint64_t sent, std::uint64_t total, double rate);
// "12s", "3m05s", "1h02m".
std::string format_eta(std::chrono::seconds left);
// "[=========>          ]": `width` columns in all, brackets included.
std::string progress_bar(std::uint64_t sent, std::uint64_t total, std::size_t width);
// "[=====>     ]  42%  1.2 MiB / 3.0 MiB  650.0 KiB/s  ETA 3s" (bar included when
// `bar_width` > 0). Rate and ETA only after half a second.
std::string upload_progress_text(std::uint64_t sent, std::uint64_t total,
                                 std::chrono::milliseconds elapsed, std::size_t bar_width);

// One line at the bottom of a terminal that redraws in place. Every method
// locks the line, so several threads (deploys to several hosts) may call them;
// `print` writes a normal line above it. The destructor erases it.
class StatusLine {
  public:
    using Width = std::function<std::size_t()>;
    StatusLine(std::ostream& out, Width width);
    ~StatusLine();
    StatusLine(const StatusLine&) = delete;
    StatusLine& operator=(const StatusLine&) = delete;

    // Shows `text` (cut to the terminal width) instead of the current line.
    void show(const std::string& text);
    // Erases the line; the next `show` draws it again.
    void clear();
    // Erases the line, writes `text` and a newline on `os`, and redraws the line.
    void print(std::ostream& os, std::string_view text);
    bool visible() const;

  private:
    void erase_locked();
    void draw_locked();

    std::ostream& m_out;
    Width m_width;
    mutable std::mutex m_mutex;
    std::string m_text;   // what the line shows (empty: nothing)
    bool m_drawn = false; // the terminal shows m_text now
};

// The phase line of one deployment: "⠹ v4  QUEUED → [BUILDING] → PROVISIONING →
// PRODUCTION  12.3s" (`frame` picks the spinner character; colour optional).
std::string phase_text(std::string_view release, std::string_view state,
                       std::chrono::milliseconds elapsed, std::size_t frame, bool color);

// What the status line shows while commands run, per agent: upload progress
// and the deployment's phase. A ticker thread redraws it 10 times a second
// (elapsed time, spinner, rate); all methods are thread-safe.
class LiveStatus {
  public:
    using Clock = std::chrono::steady_clock;
    LiveStatus(std::ostream& out, bool color, StatusLine::Width width);
    ~LiveStatus();
    LiveStatus(const LiveStatus&) = delete;
    LiveStatus& operator=(const LiveStatus&) = delete;

    void upload(const std::string& host, std::uint64_t sent, std::uint64_t total);
    // Ends the upload entry of `host`; returns how long it ran (0 if none).
    std::chrono::milliseconds upload_done(const std::string& host);
    void phase(const std::string& host, const std::string& release, const std::string& state);
    // Removes everything about `host` (everything when `host` is empty).
    void finish(const std::string& host);
    // A normal line above the status line.
    void print(std::ostream& os, std::string_view text);

  private:
    struct Upload {
        std::uint64_t sent = 0, total = 0;
        Clock::time_point started;
    };
    struct Phase {
        std::string release, state;
        Clock::time_point started;
    };
    void redraw_locked(bool force);
    std::string text_locked(Clock::time_point now) const;
    void start_ticker_locked();
    void tick();

    StatusLine m_line;
    bool m_color;
    std::mutex m_mutex; // guards everything below; taken before the line's own
    std::map<std::string, Upload> m_uploads;
    std::map<std::string, Phase> m_phases;
    Clock::time_point m_last_draw{};
    std::size_t m_frame = 0;
    bool m_stop = false;
    std::condition_variable m_wake;
    std::thread m_ticker;
};

} // namespace cli::output
