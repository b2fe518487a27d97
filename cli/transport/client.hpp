#pragma once
// How deployctl talks to one agent: JSON requests, blob uploads and NDJSON
// streams (docs/api.md). Errors come back typed: connection (exit 3), auth (3),
// refused (5), config / bad_request / not_found (2), internal (1).

#include <common/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace cli::transport {

// Called with each line of an NDJSON stream; return false to stop reading.
using LineHandler = std::function<bool(const nlohmann::json& event)>;
// Called while put_blob sends, with the bytes of that request sent so far.
using UploadProgress = std::function<void(std::uint64_t sent)>;

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
    virtual common::Result<nlohmann::json> remove(std::string_view path) = 0;
    // Reads an NDJSON stream until the agent ends it or `on_event` returns false.
    virtual common::Status stream_ndjson(std::string_view path, const LineHandler& on_event) = 0;
    // From now on put_blob reports its progress to `progress` (empty: stop).
    // Clients that cannot tell ignore it; callers report per blob anyway.
    virtual void set_upload_progress(UploadProgress progress) { (void)progress; }
};

} // namespace cli::transport
