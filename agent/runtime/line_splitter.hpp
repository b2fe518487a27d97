#pragma once
// Cuts a byte stream (a child's output) into lines for a sink: '\n' ends a
// line, a trailing '\r' is dropped, and a line longer than k_max_line is
// passed on in pieces of that size, so no output can grow a buffer without
// bound.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace agent::runtime {

class LineSplitter {
  public:
    static constexpr std::size_t k_max_line = 64 * 1024;

    explicit LineSplitter(std::function<void(std::string_view)> sink) : m_sink(std::move(sink)) {}
    void feed(std::string_view data) {
        m_buffer.append(data);
        std::size_t start = 0, end;
        while ((end = m_buffer.find('\n', start)) != std::string::npos) {
            emit(std::string_view(m_buffer).substr(start, end - start));
            start = end + 1;
        }
        m_buffer.erase(0, start);
        while (m_buffer.size() >= k_max_line) {
            emit(std::string_view(m_buffer).substr(0, k_max_line));
            m_buffer.erase(0, k_max_line);
        }
    }
    // The last line when the stream ended without a '\n'.
    void flush() {
        if (!m_buffer.empty())
            emit(m_buffer);
        m_buffer.clear();
    }

  private:
    void emit(std::string_view line) {
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (m_sink)
            m_sink(line);
    }
    std::function<void(std::string_view)> m_sink;
    std::string m_buffer;
};

} // namespace agent::runtime
