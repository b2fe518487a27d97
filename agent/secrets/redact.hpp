#pragma once
// Redaction of secret values in log output: every occurrence of a value is
// replaced by "[redacted]" before a line reaches disk (the release's event
// log, the app log, the agent's own messages).
//
// Values are matched longest first, so of two overlapping secrets the longer
// one is hidden whole. Values shorter than k_min_secret are never stored
// (`env set --secret` refuses them). A value with line breaks is also matched
// line by line, since log lines are cut at '\n'.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace agent::secrets {

inline constexpr std::string_view k_redacted = "[redacted]";
inline constexpr std::size_t k_min_secret = 8;

class Redactor {
  public:
    Redactor() = default;
    explicit Redactor(const std::vector<std::string>& values);
    ~Redactor();
    Redactor(const Redactor&) = default;
    Redactor& operator=(const Redactor&) = default;

    bool empty() const { return m_values.empty(); }
    // The longest value, the most a match can span.
    std::size_t longest() const { return m_values.empty() ? 0 : m_values.front().size(); }
    std::string apply(std::string_view text) const;
    // Redacts text[0, end) plus any match that starts there and runs past it;
    // returns how far it consumed (>= end).
    std::size_t apply_prefix(std::string_view text, std::size_t end, std::string& out) const;

  private:
    std::vector<std::string> m_values; // longest first
};

// A byte stream (an app's stdout/stderr) to a sink, redacted. Whole lines are
// passed on at once; a line longer than k_max_line is passed on in pieces,
// holding back enough of its tail that a value cut by a read boundary or a
// piece boundary is still found whole.
class StreamRedactor {
  public:
    static constexpr std::size_t k_max_line = 64 * 1024;

    StreamRedactor(Redactor redactor, std::function<void(std::string_view)> sink)
        : m_redactor(std::move(redactor)), m_sink(std::move(sink)) {}
    void feed(std::string_view data);
    // The end of the stream: the rest, redacted.
    void flush();

  private:
    void emit(std::string_view text);
    Redactor m_redactor;
    std::function<void(std::string_view)> m_sink;
    std::string m_buffer;
};

} // namespace agent::secrets
