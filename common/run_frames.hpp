#pragma once
// The frames of `deployctl run` once the agent has answered 101 (docs/api.md,
// "Running a command"): 1 byte type, 4 bytes big-endian length, the payload.
// Both sides encode with encode_frame() and decode with FrameReader.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace common::run {

inline constexpr std::string_view k_upgrade = "deployctl-run/1";
inline constexpr std::size_t k_max_payload = 1u << 20;
// A client sends a frame (a ping when it has nothing else) at least this often; the agent
// takes one that sent nothing for k_silence as gone.
inline constexpr auto k_ping_every = std::chrono::seconds(5);
inline constexpr auto k_silence = std::chrono::seconds(20);

enum class Frame : std::uint8_t {
    // client → agent
    stdin_data = 0x01,
    stdin_eof = 0x02,
    resize = 0x03, // cols, rows: u16 BE each
    signal = 0x04, // one byte: the signal number
    ping = 0x05,
    // agent → client
    started = 0x10, // JSON {"release","engine"}
    stdout_data = 0x11,
    stderr_data = 0x12,
    exit = 0x13, // JSON {"status"[,"signal"][,"error"]}
};

// Whether `type` is a frame the protocol defines.
bool known_frame(std::uint8_t type);

// The frame's bytes: header and payload.
std::string encode_frame(Frame type, std::string_view payload = {});
std::string encode_resize(unsigned cols, unsigned rows);
// A resize payload back to its size; nullopt when it is not 4 bytes.
struct WindowSize {
    unsigned cols = 0, rows = 0;
};
std::optional<WindowSize> decode_resize(std::string_view payload);

struct Decoded {
    Frame type;
    std::string payload;
};

// Collects bytes as they arrive and hands out whole frames.
class FrameReader {
  public:
    void feed(std::string_view bytes) { m_buffer.append(bytes); }
    // The next whole frame, nullopt until one has arrived. A frame of an
    // unknown type or longer than k_max_payload sets error() and returns nullopt.
    std::optional<Decoded> next();
    const std::string& error() const { return m_error; }
    // Bytes held that are not yet a whole frame.
    std::size_t buffered() const { return m_buffer.size() - m_offset; }

  private:
    std::string m_buffer;
    std::size_t m_offset = 0;
    std::string m_error;
};

} // namespace common::run
