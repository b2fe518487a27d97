#pragma once
// Reading a log file that another process is still appending to: each call
// returns the complete lines added since the last call (a trailing partial
// line waits until its '\n' arrives). A file that does not exist yet reads as
// empty; a file that shrank (truncated) or was replaced (another file now has its
// name: the log rotated, logs/rotating_file.hpp) is read again from the start.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace agent::logs {

inline constexpr std::size_t k_max_line_length = 1024 * 1024;

class LineReader {
  public:
    explicit LineReader(std::filesystem::path path);
    // Starts at `offset` instead of the beginning (where a search ended: scan_lines).
    LineReader(std::filesystem::path path, std::uint64_t offset);

    // Complete new lines, without their '\n'; empty lines are skipped.
    // A line longer than k_max_line_length is cut into pieces of that size.
    std::vector<std::string> read_new_lines();
    std::uint64_t offset() const { return m_offset; }

  private:
    void split_lines(std::vector<std::string>& lines);

    std::filesystem::path m_path;
    std::uint64_t m_offset = 0;
    std::uint64_t m_inode = 0; // of the file read so far (0: none yet)
    std::string m_partial;
};

} // namespace agent::logs
