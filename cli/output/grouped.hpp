#pragma once
// Output of several hosts working at once (cli/fleet.hpp), never interleaved line by line.
//
// Each host gets a Printer of its own, used only by that host's thread. In `Mode::grouped`
// (human output) one host at a time is "live" and prints as it goes; the others' events are
// kept and printed as a whole block when they finish and nobody is live, so one host's
// lines are always contiguous. In `Mode::immediate` (--json) every event is printed at once,
// whole, under the lock: NDJSON lines carry their host and may interleave.
//
// On a terminal (`phase_line`), one line at the bottom shows each host's current phase and
// is redrawn in place; it is cleared before anything else is printed.

#include <cli/output/printer.hpp>

#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace cli::output {

class GroupedOutput {
  public:
    enum class Mode { grouped, immediate };
    // `term` is where the phase line is drawn (stdout); nullptr: no phase line.
    GroupedOutput(Printer& out, Mode mode, std::ostream* term);
    ~GroupedOutput();

    // The Printer for one host's thread. Hosts are shown in the phase line in this order.
    std::unique_ptr<Printer> for_host(const std::string& host);
    // The host is done: its block is printed (now, or when the live host finishes).
    void finish(const std::string& host);
    // Sets the host's phase in the phase line ("queued", "BUILDING", ...).
    void set_phase(const std::string& host, const std::string& phase);
    // Upload progress of `host` (reported as `as_host`): the phase line's percentage on a
    // terminal with several hosts, else passed on at once if the host prints live.
    void progress(const std::string& host, const std::string& as_host, std::uint64_t sent,
                  std::uint64_t total);
    // Prints everything still buffered and removes the phase line.
    void flush_all();

    // Called by the host printers.
    void emit(const std::string& host, Event event);

  private:
    struct HostBlock {
        std::vector<Event> pending;
        bool finished = false;
        std::string phase = "waiting";
    };
    void print_locked(const Event& event);
    void flush_locked(HostBlock& block);
    void next_live_locked();
    void clear_phase_locked();
    void draw_phase_locked();

    Printer& m_out;
    Mode m_mode;
    std::ostream* m_term;
    std::mutex m_mutex;
    std::vector<std::string> m_order; // hosts, in for_host order
    std::map<std::string, HostBlock> m_blocks;
    std::vector<std::string> m_done_waiting; // finished while another host was live
    std::string m_live;                      // "" = nobody
    bool m_phase_shown = false;
};

// "127.0.0.1:7070" from "http://127.0.0.1:7070" (the phase line is short).
std::string short_host(const std::string& host);

} // namespace cli::output
