#include <agent/secrets/redact.hpp>

#include <openssl/crypto.h>

#include <algorithm>

namespace agent::secrets {

Redactor::Redactor(const std::vector<std::string>& values) {
    for (const auto& value : values) {
        if (value.size() < k_min_secret)
            continue;
        m_values.push_back(value);
        if (value.find('\n') == std::string::npos)
            continue;
        for (std::size_t start = 0; start <= value.size();) {
            auto end = std::min(value.find('\n', start), value.size());
            auto line = value.substr(start, end - start);
            if (!line.empty() && line.back() == '\r')
                line.pop_back();
            if (line.size() >= k_min_secret)
                m_values.push_back(line);
            start = end + 1;
        }
    }
    std::sort(m_values.begin(), m_values.end(), [](const std::string& a, const std::string& b) {
        return a.size() != b.size() ? a.size() > b.size() : a < b;
    });
    m_values.erase(std::unique(m_values.begin(), m_values.end()), m_values.end());
}

Redactor::~Redactor() {
    for (auto& value : m_values)
        OPENSSL_cleanse(value.data(), value.size());
}

std::size_t Redactor::apply_prefix(std::string_view text, std::size_t end, std::string& out) const {
    std::size_t i = 0;
    std::size_t copied = 0; // text[copied, i) is still to be copied
    while (i < end) {
        const std::string* hit = nullptr;
        for (const auto& value : m_values)
            if (text.size() - i >= value.size() && text[i] == value[0] &&
                text.compare(i, value.size(), value) == 0) {
                hit = &value;
                break;
            }
        if (!hit) {
            ++i;
            continue;
        }
        out.append(text.substr(copied, i - copied));
        out.append(k_redacted);
        i += hit->size();
        copied = i;
    }
    out.append(text.substr(copied, i - copied));
    return i;
}

std::string Redactor::apply(std::string_view text) const {
    std::string out;
    if (m_values.empty())
        return std::string(text);
    out.reserve(text.size());
    apply_prefix(text, text.size(), out);
    return out;
}

void StreamRedactor::emit(std::string_view text) {
    if (m_sink && !text.empty())
        m_sink(text);
}

void StreamRedactor::feed(std::string_view data) {
    m_buffer.append(data);
    auto last_newline = m_buffer.rfind('\n');
    std::size_t done = 0;
    std::string out;
    if (last_newline != std::string::npos)
        done = m_redactor.apply_prefix(std::string_view(m_buffer).substr(0, last_newline + 1),
                                       last_newline + 1, out);
    // A long line without end: pass on what no value can still reach into.
    const std::size_t hold = m_redactor.empty() ? 0 : m_redactor.longest() - 1;
    if (m_buffer.size() - done >= k_max_line + hold) {
        std::string_view rest = std::string_view(m_buffer).substr(done);
        done += m_redactor.apply_prefix(rest, rest.size() - hold, out);
    }
    m_buffer.erase(0, done);
    emit(out);
}

void StreamRedactor::flush() {
    emit(m_redactor.apply(m_buffer));
    m_buffer.clear();
}

} // namespace agent::secrets
