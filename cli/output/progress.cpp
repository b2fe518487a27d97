#include <cli/output/format.hpp>
#include <cli/output/progress.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <mutex>
#include <ostream>
#include <sys/ioctl.h>
#include <unistd.h>

namespace cli::output {

namespace {

constexpr std::string_view k_erase = "\r\033[K";

// Set while a status line is on the screen, so that Ctrl-C or a TERM erases it
// before the process dies (the shell prompt would otherwise land after it).
std::atomic<bool> g_line_on_screen{false};

extern "C" void erase_and_die(int sig) {
    if (g_line_on_screen.load())
        (void)!::write(STDOUT_FILENO, k_erase.data(), k_erase.size());
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

// Installs erase_and_die for SIGINT and SIGTERM once, where nobody else handles them.
void install_signal_handlers() {
    static std::once_flag once;
    std::call_once(once, [] {
        for (int sig : {SIGINT, SIGTERM}) {
            struct sigaction old {};
            if (sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL)
                continue;
            struct sigaction action {};
            action.sa_handler = erase_and_die;
            sigemptyset(&action.sa_mask);
            sigaction(sig, &action, nullptr);
        }
    });
}

// Bytes in the UTF-8 sequence that starts with `lead` (1 for stray bytes).
std::size_t utf8_length(unsigned char lead) {
    if (lead >= 0xF0)
        return 4;
    if (lead >= 0xE0)
        return 3;
    if (lead >= 0xC0)
        return 2;
    return 1;
}

// Length of the escape sequence at text[i] (ESC [ params final-byte), or 0.
std::size_t escape_length(std::string_view text, std::size_t i) {
    if (text[i] != '\033')
        return 0;
    if (i + 1 >= text.size() || text[i + 1] != '[')
        return std::min<std::size_t>(2, text.size() - i);
    std::size_t j = i + 2;
    while (j < text.size() && !(text[j] >= 0x40 && text[j] <= 0x7E))
        ++j;
    return std::min(j + 1, text.size()) - i;
}

} // namespace

std::optional<std::size_t> terminal_width(int fd) {
    struct winsize size {};
    if (ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_col == 0)
        return std::nullopt;
    return size.ws_col;
}

std::size_t visible_width(std::string_view text) {
    std::size_t width = 0;
    for (std::size_t i = 0; i < text.size();) {
        if (auto esc = escape_length(text, i)) {
            i += esc;
            continue;
        }
        i += utf8_length(static_cast<unsigned char>(text[i]));
        ++width;
    }
    return width;
}

std::string truncate_to_width(std::string_view text, std::size_t width) {
    if (visible_width(text) <= width)
        return std::string(text);
    std::string out;
    bool escapes = false;
    std::size_t used = 0;
    const std::size_t room = width > 0 ? width - 1 : 0; // one column for "…"
    for (std::size_t i = 0; i < text.size();) {
        if (auto esc = escape_length(text, i)) {
            out.append(text.substr(i, esc));
            escapes = true;
            i += esc;
            continue;
        }
        if (used == room)
            break;
        auto n = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
        out.append(text.substr(i, n));
        i += n;
        ++used;
    }
    if (width > 0)
        out += "…";
    if (escapes)
        out += "\033[0m";
    return out;
}

double transfer_rate(std::uint64_t bytes, std::chrono::milliseconds elapsed) {
    if (elapsed.count() <= 0)
        return 0;
    return static_cast<double>(bytes) * 1000.0 / static_cast<double>(elapsed.count());
}

std::optional<std::chrono::seconds> eta(std::uint64_t sent, std::uint64_t total, double rate) {
    if (sent >= total)
        return std::chrono::seconds(0);
    if (rate <= 0)
        return std::nullopt;
    const double left = static_cast<double>(total - sent) / rate;
    return std::chrono::seconds(static_cast<std::int64_t>(left + 0.999)); // round up
}

std::string format_eta(std::chrono::seconds left) {
    const auto s = std::max<std::int64_t>(left.count(), 0);
    if (s < 60)
        return fmt::format("{}s", s);
    if (s < 3600)
        return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string progress_bar(std::uint64_t sent, std::uint64_t total, std::size_t width) {
    if (width < 3)
        return {};
    const std::size_t inner = width - 2;
    const double fraction =
        total == 0 ? 1.0 : std::min(1.0, static_cast<double>(sent) / static_cast<double>(total));
    const auto filled = static_cast<std::size_t>(fraction * static_cast<double>(inner));
    std::string bar = "[";
    bar.append(filled, '=');
    if (filled < inner) {
        bar += '>';
        bar.append(inner - filled - 1, ' ');
    }
    return bar + "]";
}

std::string upload_progress_text(std::uint64_t sent, std::uint64_t total,
                                 std::chrono::milliseconds elapsed, std::size_t bar_width) {
    // The first moments say little (small blobs first, then reading a big one).
    const double rate =
        elapsed >= std::chrono::milliseconds(500) ? transfer_rate(sent, elapsed) : 0;
    const auto left = eta(sent, total, rate);
    const int percent =
        total == 0 ? 100 : static_cast<int>(std::min<std::uint64_t>(100, sent * 100 / total));
    std::string text = bar_width > 0 ? progress_bar(sent, total, bar_width) + " " : "";
    text += fmt::format("{:>3}%  {} / {}", percent, format_bytes(sent), format_bytes(total));
    if (rate > 0)
        text += fmt::format("  {}/s", format_bytes(static_cast<std::uint64_t>(rate)));
    text += "  ETA " + (left ? format_eta(*left) : std::string("?"));
    return text;
}

StatusLine::StatusLine(std::ostream& out, Width width) : m_out(out), m_width(std::move(width)) {
    install_signal_handlers();
}

StatusLine::~StatusLine() {
    std::lock_guard lock(m_mutex);
    erase_locked();
}

void StatusLine::show(const std::string& text) {
    std::lock_guard lock(m_mutex);
    if (text == m_text && m_drawn)
        return;
    m_text = text;
    if (m_text.empty())
        erase_locked();
    else
        draw_locked(); // over the old text: no flicker
}

void StatusLine::clear() {
    std::lock_guard lock(m_mutex);
    erase_locked();
    m_text.clear();
}

void StatusLine::print(std::ostream& os, std::string_view text) {
    std::lock_guard lock(m_mutex);
    erase_locked();
    os << text << '\n';
    os.flush();
    draw_locked();
}

bool StatusLine::visible() const {
    std::lock_guard lock(m_mutex);
    return m_drawn;
}

void StatusLine::erase_locked() {
    if (!m_drawn)
        return;
    m_out << k_erase;
    m_out.flush();
    m_drawn = false;
    g_line_on_screen = false;
}

void StatusLine::draw_locked() {
    if (m_text.empty())
        return;
    // One column less than the terminal: writing the last column would wrap on some terminals.
    const std::size_t width = m_width ? m_width() : 80;
    m_out << '\r' << truncate_to_width(m_text, width > 1 ? width - 1 : width) << "\033[K";
    m_out.flush();
    m_drawn = true;
    g_line_on_screen = true;
}

std::string phase_text(std::string_view release, std::string_view state,
                       std::chrono::milliseconds elapsed, std::size_t frame, bool color) {
    static constexpr std::string_view k_spinner[] = {"⠋", "⠙", "⠹", "⠸", "⠼",
                                                     "⠴", "⠦", "⠧", "⠇", "⠏"};
    static constexpr std::string_view k_phases[] = {"QUEUED", "BUILDING", "PROVISIONING",
                                                    "PRODUCTION"};
    const auto paint = [color](const char* code, std::string_view text) {
        return color ? fmt::format("{}{}\033[0m", code, text) : std::string(text);
    };
    const auto current = std::find(std::begin(k_phases), std::end(k_phases), state);
    std::string text = fmt::format("{} {} ", k_spinner[frame % std::size(k_spinner)], release);
    if (current == std::end(k_phases))
        text += " " + paint("\033[1;33m", state);
    for (auto it = std::begin(k_phases); it != std::end(k_phases); ++it) {
        text += it == std::begin(k_phases) ? " " : paint("\033[2m", " → ");
        if (it < current)
            text += paint("\033[32m", *it);
        else if (it == current)
            text += paint("\033[1;33m", fmt::format("[{}]", *it));
        else
            text += paint("\033[2m", *it);
    }
    return text + "  " + format_elapsed(elapsed.count());
}

LiveStatus::LiveStatus(std::ostream& out, bool color, StatusLine::Width width)
    : m_line(out, std::move(width)), m_color(color) {}

LiveStatus::~LiveStatus() {
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_wake.notify_all();
    if (m_ticker.joinable())
        m_ticker.join();
    m_line.clear();
}

void LiveStatus::upload(const std::string& host, std::uint64_t sent, std::uint64_t total) {
    std::lock_guard lock(m_mutex);
    auto [it, added] = m_uploads.try_emplace(host);
    if (added)
        it->second.started = Clock::now();
    it->second.sent = sent;
    it->second.total = total;
    redraw_locked(added || sent >= total);
}

std::chrono::milliseconds LiveStatus::upload_done(const std::string& host) {
    std::lock_guard lock(m_mutex);
    auto it = m_uploads.find(host);
    if (it == m_uploads.end())
        return {};
    auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - it->second.started);
    m_uploads.erase(it);
    redraw_locked(true);
    return took;
}

void LiveStatus::phase(const std::string& host, const std::string& release,
                       const std::string& state) {
    std::lock_guard lock(m_mutex);
    auto [it, added] = m_phases.try_emplace(host);
    if (added || it->second.release != release)
        it->second.started = Clock::now();
    it->second.release = release;
    it->second.state = state;
    redraw_locked(true);
}

void LiveStatus::finish(const std::string& host) {
    std::lock_guard lock(m_mutex);
    if (host.empty()) {
        m_uploads.clear();
        m_phases.clear();
    } else {
        m_uploads.erase(host);
        m_phases.erase(host);
    }
    redraw_locked(true);
}

void LiveStatus::print(std::ostream& os, std::string_view text) {
    m_line.print(os, text);
}

void LiveStatus::redraw_locked(bool force) {
    const auto now = Clock::now();
    // At most ~10 redraws a second: progress callbacks come far more often.
    if (!force && now - m_last_draw < std::chrono::milliseconds(100))
        return;
    m_last_draw = now;
    m_line.show(text_locked(now));
    if (!m_uploads.empty() || !m_phases.empty())
        start_ticker_locked();
}

std::string LiveStatus::text_locked(Clock::time_point now) const {
    const auto since = [now](Clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(now - t);
    };
    const bool several = m_uploads.size() + m_phases.size() > 1;
    std::string text;
    const auto add = [&](const std::string& host, const std::string& part) {
        if (!text.empty())
            text += "  ";
        text += several ? "[" + host + "] " + part : part;
    };
    for (const auto& [host, u] : m_uploads)
        add(host, "Uploading " +
                      upload_progress_text(u.sent, u.total, since(u.started), several ? 0 : 24));
    for (const auto& [host, p] : m_phases)
        add(host, phase_text(p.release, p.state, since(p.started), m_frame, m_color));
    return text;
}

void LiveStatus::start_ticker_locked() {
    if (m_ticker.joinable())
        return;
    m_ticker = std::thread([this] { tick(); });
}

void LiveStatus::tick() {
    std::unique_lock lock(m_mutex);
    while (!m_stop) {
        m_wake.wait_for(lock, std::chrono::milliseconds(100));
        if (m_stop)
            break;
        if (m_uploads.empty() && m_phases.empty())
            continue;
        ++m_frame;
        redraw_locked(true);
    }
}

} // namespace cli::output
