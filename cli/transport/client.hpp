#pragma once
// How deployctl talks to one agent: JSON requests, blob uploads and NDJSON
// streams (docs/api.md). Errors come back typed: connection (exit 3), auth (3),
// refused (5), config / bad_request / not_found (2), internal (1).

#include <common/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace cli::transport {

// The body of POST /v1/blobs: framed blobs (docs/api.md, "Uploading").
inline constexpr std::string_view k_blobs_type = "application/x-deployctl-blobs";

// Called with each line of an NDJSON stream; return false to stop reading.
using LineHandler = std::function<bool(const nlohmann::json& event)>;
// Called while put_blob sends, with the bytes of that request sent so far.
using UploadProgress = std::function<void(std::uint64_t sent)>;

// The connection of `deployctl run` once the agent answered 101 (docs/api.md, "Running a
// command"): bytes both ways, never blocking. The frames are common/run_frames.hpp's.
class Duplex {
  public:
    virtual ~Duplex() = default;

    // Sends what the connection takes now of `bytes`: how many (0: it is full; poll fd()
    // for POLLOUT and try again).
    virtual common::Result<std::size_t> send(std::string_view bytes) = 0;
    struct Received {
        std::size_t size = 0; // 0 and !eof: nothing has arrived (poll fd() for POLLIN)
        bool eof = false;     // the agent closed the connection
    };
    virtual common::Result<Received> receive(char* buffer, std::size_t capacity) = 0;
    // The socket to poll.
    virtual int fd() const = 0;
    // Bytes already read from the socket and not yet handed out by receive() (the rest of
    // the answer's head, TLS records): receive() before polling.
    virtual bool has_buffered() const = 0;
};

class Client {
  public:
    virtual ~Client() = default;

    // The agent's URL, for messages ("http://127.0.0.1:7070").
    virtual const std::string& url() const = 0;

    virtual common::Result<nlohmann::json> get_json(std::string_view path) = 0;
    virtual common::Result<nlohmann::json> post_json(std::string_view path,
                                                     const nlohmann::json& body) = 0;
    virtual common::Result<nlohmann::json> put_blob(std::string_view path,
                                                    std::string_view bytes) = 0;
    // POSTs raw bytes (the framed blobs of POST /v1/blobs, a zstd-compressed JSON body
    // with `content_encoding` "zstd"); progress is reported as for put_blob.
    virtual common::Result<nlohmann::json> post_bytes(std::string_view path, std::string_view bytes,
                                                      std::string_view content_type,
                                                      std::string_view content_encoding = {});
    // What this client has sent so far, request heads and bodies (the figures of an upload).
    virtual std::uint64_t bytes_sent() const { return 0; }
    virtual common::Result<nlohmann::json> remove(std::string_view path) = 0;
    // Reads an NDJSON stream until the agent ends it or `on_event` returns false.
    virtual common::Status stream_ndjson(std::string_view path, const LineHandler& on_event) = 0;
    // POST `body` to `path` asking for the upgrade to the run protocol; the agent's 101
    // gives the connection, any other answer its error, typed as for the other calls.
    virtual common::Result<std::unique_ptr<Duplex>> open_run(std::string_view path,
                                                             const nlohmann::json& body);
    // A client of the same agent on a connection of its own, for requests sent side by side
    // (an upload's batches); null when the transport has none to give.
    virtual std::unique_ptr<Client> another() const { return nullptr; }
    // From now on put_blob reports its progress to `progress` (empty: stop).
    // Clients that cannot tell ignore it; callers report per blob anyway.
    virtual void set_upload_progress(UploadProgress progress) { (void)progress; }
};

} // namespace cli::transport
