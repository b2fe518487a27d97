#include <cli/output/format.hpp>
#include <cli/output/grouped.hpp>
#include <cli/output/progress.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <optional>
#include <ostream>
#include <unistd.h>
#include <variant>

namespace cli::output {

namespace {

template <class... Fs> struct Overloaded : Fs... { using Fs::operator()...; };

// What the phase line says of a host after `event`; nothing for the kinds that leave it.
std::optional<std::string> phase_of(const Event& event) {
    using Phase = std::optional<std::string>;
    return std::visit(
        Overloaded{
            [](const Uploading&) -> Phase { return "uploading"; },
            [](const Created& e) -> Phase { return e.release + " " + e.state; },
            [](const AgentEvent& e) -> Phase {
                auto release = json_str(*e.event, "release");
                auto state = json_str(*e.event, "state");
                if (json_str(*e.event, "event") != "state" || release.empty() || state.empty())
                    return std::nullopt;
                return release + " " + state;
            },
            [](const Done& e) -> Phase { return e.release + " " + e.state; },
            [](const Unchanged& e) -> Phase { return e.release + " already serving"; },
            [](const RolledBack& e) -> Phase { return "rolled back to " + e.release; },
            [](const Error&) -> Phase { return "error"; },
            [](const auto&) -> Phase { return std::nullopt; },
        },
        event);
}

// Keeps (or passes on) every event of one host, and follows its phase.
class HostPrinter final : public Printer {
  public:
    HostPrinter(GroupedOutput& group, std::string host) : m_group(group), m_host(std::move(host)) {}

    void emit(const Event& event) override {
        if (const auto* progress = std::get_if<UploadProgress>(&event)) {
            m_group.progress(m_host, progress->host, progress->bytes_sent, progress->bytes_total);
            return;
        }
        if (auto phase = phase_of(event))
            m_group.set_phase(m_host, *phase);
        m_group.emit(m_host, event);
    }

  private:
    GroupedOutput& m_group;
    std::string m_host;
};

} // namespace

std::string short_host(const std::string& host) {
    auto scheme = host.find("://");
    return scheme == std::string::npos ? host : host.substr(scheme + 3);
}

GroupedOutput::GroupedOutput(Printer& out, Mode mode, std::ostream* term)
    : m_out(out), m_mode(mode), m_term(term) {}

GroupedOutput::~GroupedOutput() {
    flush_all();
}

std::unique_ptr<Printer> GroupedOutput::for_host(const std::string& host) {
    std::lock_guard lock(m_mutex);
    auto [it, added] = m_blocks.emplace(host, HostBlock{});
    if (added)
        m_order.push_back(host);
    it->second.finished = false; // a host may work again (the rollback after the deploy)
    return std::make_unique<HostPrinter>(*this, host);
}

void GroupedOutput::emit(const std::string& host, Event event) {
    std::lock_guard lock(m_mutex);
    if (m_mode == Mode::immediate) {
        print_locked(event);
        return;
    }
    if (m_live.empty())
        m_live = host;
    if (m_live == host)
        print_locked(event);
    else
        m_blocks[host].pending.push_back(std::move(event));
}

void GroupedOutput::progress(const std::string& host, const std::string& as_host,
                             std::uint64_t sent, std::uint64_t total) {
    std::lock_guard lock(m_mutex);
    // Progress is only worth showing now: never buffered. With a phase line (several
    // hosts on a terminal) it shows as a percentage there; otherwise the printer draws it.
    if (m_term) {
        auto& block = m_blocks[host];
        std::string phase = fmt::format(
            "uploading {}%", total ? std::min<std::uint64_t>(100, sent * 100 / total) : 100);
        if (block.phase != phase) {
            block.phase = std::move(phase);
            clear_phase_locked();
            draw_phase_locked();
        }
        return;
    }
    if (m_mode == Mode::immediate || m_live.empty() || m_live == host)
        m_out.emit(UploadProgress{as_host, sent, total});
}

void GroupedOutput::finish(const std::string& host) {
    std::lock_guard lock(m_mutex);
    auto& block = m_blocks[host];
    block.finished = true;
    if (m_mode == Mode::immediate)
        return;
    if (m_live == host) {
        m_live.clear();
        next_live_locked();
    } else if (m_live.empty()) {
        flush_locked(block);
    } else {
        m_done_waiting.push_back(host);
    }
}

// The live host finished: print the blocks that finished meanwhile, then let the
// first running host with output go live (its lines so far first).
void GroupedOutput::next_live_locked() {
    for (const auto& done : m_done_waiting)
        flush_locked(m_blocks[done]);
    m_done_waiting.clear();
    for (const auto& host : m_order) {
        auto& block = m_blocks[host];
        if (!block.finished && !block.pending.empty()) {
            m_live = host;
            flush_locked(block);
            return;
        }
    }
}

void GroupedOutput::flush_locked(HostBlock& block) {
    for (const auto& event : block.pending)
        print_locked(event);
    block.pending.clear();
}

void GroupedOutput::print_locked(const Event& event) {
    clear_phase_locked();
    m_out.emit(event);
    draw_phase_locked();
}

void GroupedOutput::set_phase(const std::string& host, const std::string& phase) {
    std::lock_guard lock(m_mutex);
    auto& block = m_blocks[host];
    if (block.phase == phase)
        return;
    block.phase = phase;
    clear_phase_locked();
    draw_phase_locked();
}

void GroupedOutput::flush_all() {
    std::lock_guard lock(m_mutex);
    for (const auto& host : m_order)
        flush_locked(m_blocks[host]);
    m_done_waiting.clear();
    m_live.clear();
    clear_phase_locked();
    m_term = nullptr; // no phase line after this
}

void GroupedOutput::clear_phase_locked() {
    if (!m_term || !m_phase_shown)
        return;
    *m_term << "\r\033[K" << std::flush;
    m_phase_shown = false;
}

void GroupedOutput::draw_phase_locked() {
    if (!m_term || m_order.empty())
        return;
    std::string text;
    for (const auto& host : m_order)
        text += (text.empty() ? "" : " | ") + short_host(host) + " " + m_blocks[host].phase;
    // One column short of the width: a full line would wrap before the next \r.
    auto width = terminal_width(STDOUT_FILENO).value_or(80) - 1;
    *m_term << truncate_to_width(text, width) << std::flush;
    m_phase_shown = true;
}

} // namespace cli::output
