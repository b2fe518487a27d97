#include <common/run_frames.hpp>

#include <fmt/format.h>

namespace common::run {

bool known_frame(std::uint8_t type) {
    return (type >= 0x01 && type <= 0x05) || (type >= 0x10 && type <= 0x13);
}

std::string encode_frame(Frame type, std::string_view payload) {
    std::string out;
    out.reserve(5 + payload.size());
    const auto n = static_cast<std::uint32_t>(payload.size());
    out.push_back(static_cast<char>(type));
    out.push_back(static_cast<char>((n >> 24) & 0xff));
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    out.push_back(static_cast<char>((n >> 8) & 0xff));
    out.push_back(static_cast<char>(n & 0xff));
    out.append(payload);
    return out;
}

std::string encode_resize(unsigned cols, unsigned rows) {
    const char payload[4] = {static_cast<char>((cols >> 8) & 0xff), static_cast<char>(cols & 0xff),
                             static_cast<char>((rows >> 8) & 0xff), static_cast<char>(rows & 0xff)};
    return encode_frame(Frame::resize, std::string_view(payload, 4));
}

std::optional<WindowSize> decode_resize(std::string_view payload) {
    if (payload.size() != 4)
        return std::nullopt;
    const auto byte = [&](std::size_t i) -> unsigned { return static_cast<unsigned char>(payload[i]); };
    return WindowSize{(byte(0) << 8u) | byte(1), (byte(2) << 8u) | byte(3)};
}

std::optional<Decoded> FrameReader::next() {
    if (!m_error.empty() || buffered() < 5)
        return std::nullopt;
    const auto* head = reinterpret_cast<const unsigned char*>(m_buffer.data() + m_offset);
    if (!known_frame(head[0])) {
        m_error = fmt::format("unknown frame type 0x{:02x}", head[0]);
        return std::nullopt;
    }
    const std::size_t length = (std::size_t{head[1]} << 24) | (std::size_t{head[2]} << 16) |
                               (std::size_t{head[3]} << 8) | head[4];
    if (length > k_max_payload) {
        m_error = fmt::format("a frame of {} bytes (at most {})", length, k_max_payload);
        return std::nullopt;
    }
    if (buffered() < 5 + length)
        return std::nullopt;
    Decoded frame{static_cast<Frame>(head[0]), m_buffer.substr(m_offset + 5, length)};
    m_offset += 5 + length;
    if (m_offset > 65536 && m_offset * 2 > m_buffer.size()) { // drop what was read
        m_buffer.erase(0, m_offset);
        m_offset = 0;
    }
    return frame;
}

} // namespace common::run
