#include <cli/output/grouped.hpp>
#include <cli/output/progress.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ostream>
#include <unistd.h>

namespace cli::output {

namespace {

using nlohmann::json;

// Records (or forwards) every call of one host, and follows its phase.
class HostPrinter final : public Printer {
  public:
    HostPrinter(GroupedOutput& group, std::string host) : m_group(group), m_host(std::move(host)) {}

    void warning(std::string_view message) override {
        forward([m = std::string(message)](Printer& p) { p.warning(m); });
    }
    void packaged(const PackageSummary& s) override {
        forward([s](Printer& p) { p.packaged(s); });
    }
    void uploading(const std::string& host, const UploadStats& s) override {
        m_group.set_phase(m_host, "uploading");
        forward([host, s](Printer& p) { p.uploading(host, s); });
    }
    void uploaded(const std::string& host, const UploadStats& s) override {
        forward([host, s](Printer& p) { p.uploaded(host, s); });
    }
    void created(const std::string& host, const std::string& release,
                 const std::string& state) override {
        m_group.set_phase(m_host, release + " " + state);
        forward([host, release, state](Printer& p) { p.created(host, release, state); });
    }
    void agent_event(const std::string& host, const json& event) override {
        if (event.value("event", "") == "state")
            m_group.set_phase(m_host, event.value("release", "") + " " + event.value("state", ""));
        forward([host, event](Printer& p) { p.agent_event(host, event); });
    }
    void done(const DoneInfo& info) override {
        m_group.set_phase(m_host, info.release + " " + info.state);
        forward([info](Printer& p) { p.done(info); });
    }
    void rolled_back(const DoneInfo& info) override {
        m_group.set_phase(m_host, "rolled back to " + info.release);
        forward([info](Printer& p) { p.rolled_back(info); });
    }
    void removed(const std::string& host, const std::string& release) override {
        forward([host, release](Printer& p) { p.removed(host, release); });
    }
    void releases(const std::string& host, const json& list) override {
        forward([host, list](Printer& p) { p.releases(host, list); });
    }
    void status(const std::string& host, const json& status) override {
        forward([host, status](Printer& p) { p.status(host, status); });
    }
    void env_list(const std::string& host, const json& answer) override {
        forward([host, answer](Printer& p) { p.env_list(host, answer); });
    }
    void env_changed(const std::string& host, const json& answer) override {
        forward([host, answer](Printer& p) { p.env_changed(host, answer); });
    }
    void version(std::string_view version) override {
        forward([v = std::string(version)](Printer& p) { p.version(v); });
    }
    void agent(const std::string& host, bool info, const json& answer) override {
        forward([host, info, answer](Printer& p) { p.agent(host, info, answer); });
    }
    void token_created(const std::string& host, const json& token) override {
        forward([host, token](Printer& p) { p.token_created(host, token); });
    }
    void tokens(const std::string& host, const json& list) override {
        forward([host, list](Printer& p) { p.tokens(host, list); });
    }
    void token_revoked(const std::string& host, const json& token) override {
        forward([host, token](Printer& p) { p.token_revoked(host, token); });
    }
    void audit(const std::string& host, const json& list) override {
        forward([host, list](Printer& p) { p.audit(host, list); });
    }
    void error(const common::Error& error, const std::string& host) override {
        m_group.set_phase(m_host, "error");
        forward([error, host](Printer& p) { p.error(error, host); });
    }
    void summary(const Summary& summary) override {
        forward([summary](Printer& p) { p.summary(summary); });
    }
    void templates(const std::vector<TemplateSummary>& list) override {
        forward([list](Printer& p) { p.templates(list); });
    }
    void initialized(const InitSummary& summary) override {
        forward([summary](Printer& p) { p.initialized(summary); });
    }
    void upload_progress(const std::string& host, std::uint64_t sent,
                         std::uint64_t total) override {
        m_group.progress(m_host, host, sent, total);
    }

  private:
    void forward(std::function<void(Printer&)> call) { m_group.emit(m_host, std::move(call)); }

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

void GroupedOutput::emit(const std::string& host, std::function<void(Printer&)> call) {
    std::lock_guard lock(m_mutex);
    if (m_mode == Mode::immediate) {
        print_locked(call);
        return;
    }
    if (m_live.empty())
        m_live = host;
    if (m_live == host)
        print_locked(call);
    else
        m_blocks[host].pending.push_back(std::move(call));
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
        m_out.upload_progress(as_host, sent, total);
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
    for (const auto& call : block.pending)
        print_locked(call);
    block.pending.clear();
}

void GroupedOutput::print_locked(const std::function<void(Printer&)>& call) {
    clear_phase_locked();
    call(m_out);
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
