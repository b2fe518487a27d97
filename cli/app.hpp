#pragma once
// The deployctl command line: parses argv, runs one command and turns its
// result into an exit code (docs/design.md §6). The only place errors become exit codes.

namespace cli {

int run(int argc, char** argv);

} // namespace cli
