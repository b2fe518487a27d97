#pragma once
// What deployctl tells its user: one Printer for people (human.cpp) and one
// for scripts (json.cpp, NDJSON on stdout, documented in docs/json.md).
// Commands report facts (events.hpp); the printers decide how they look.

#include <cli/output/events.hpp>

#include <iosfwd>
#include <memory>

namespace cli::output {

class Printer {
  public:
    virtual ~Printer() = default;

    // With several agents, human lines are prefixed with the agent.
    virtual void set_several_hosts(bool several) { (void)several; }
    // One fact for the user (events.hpp): printed at once, or kept with its host's other
    // events until they can print together (grouped.hpp).
    virtual void emit(const Event& event) = 0;
};

struct HumanStyle {
    bool color = false;
    bool quiet = false;
    bool show_host = false; // prefix lines with the agent (several hosts)
    // stdout is a terminal: an upload progress bar and a deployment phase line
    // redraw in place at the bottom (cli/output/progress.hpp). Never with `quiet`.
    bool live = false;
};

std::unique_ptr<Printer> make_human_printer(HumanStyle style, std::ostream& out, std::ostream& err);
std::unique_ptr<Printer> make_json_printer(std::ostream& out, std::ostream& err);

} // namespace cli::output
