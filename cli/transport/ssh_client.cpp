#include <cli/transport/ssh_client.hpp>
#include <cli/transport/ssh_tunnel.hpp>
#include <common/command_line.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

namespace cli::transport {

namespace {

using nlohmann::json;

// The HTTP client over the tunnel. When a request fails because the tunnel
// did (connection lost, agent command failed), the tunnel's reason is the
// error: libcurl only saw a closed socket.
class SshClient final : public Client {
  public:
    SshClient(std::shared_ptr<SshTunnel> tunnel, std::unique_ptr<Client> http)
        : m_tunnel(std::move(tunnel)), m_http(std::move(http)) {}
    ~SshClient() override {
        m_http.reset(); // closes libcurl's connections first: their channels end cleanly
        m_tunnel.reset();
    }
    SshClient(const SshClient&) = delete;
    SshClient& operator=(const SshClient&) = delete;

    const std::string& url() const override { return m_http->url(); }
    common::Result<json> get_json(std::string_view path) override {
        return checked(m_http->get_json(path));
    }
    common::Result<json> post_json(std::string_view path, const json& body) override {
        return checked(m_http->post_json(path, body));
    }
    common::Result<json> put_blob(std::string_view path, std::string_view bytes) override {
        return checked(m_http->put_blob(path, bytes));
    }
    common::Result<json> post_bytes(std::string_view path, std::string_view bytes,
                                    std::string_view content_type,
                                    std::string_view content_encoding) override {
        return checked(m_http->post_bytes(path, bytes, content_type, content_encoding));
    }
    std::uint64_t bytes_sent() const override { return m_http->bytes_sent(); }
    common::Result<json> remove(std::string_view path) override {
        return checked(m_http->remove(path));
    }
    common::Status stream_ndjson(std::string_view path, const LineHandler& on_event) override {
        return checked(m_http->stream_ndjson(path, on_event));
    }
    // The run's connection is one more channel of the tunnel; the SshClient must outlive it.
    common::Result<std::unique_ptr<Duplex>> open_run(std::string_view path,
                                                     const json& body) override {
        return checked(m_http->open_run(path, body));
    }
    // The tunnel carries libcurl's HTTP: libcurl counts the bytes.
    void set_upload_progress(UploadProgress progress) override {
        m_http->set_upload_progress(std::move(progress));
    }
    // One more channel of the same SSH session (the tunnel lives while either client does).
    std::unique_ptr<Client> another() const override {
        auto http = m_http->another();
        if (!http)
            return nullptr;
        return std::make_unique<SshClient>(m_tunnel, std::move(http));
    }

  private:
    template <class T> common::Result<T> checked(common::Result<T> result) {
        if (result)
            return result;
        const auto kind = result.error().kind;
        if (kind == common::ErrorKind::connection || kind == common::ErrorKind::timeout ||
            kind == common::ErrorKind::internal)
            if (auto failure = m_tunnel->failure())
                return *failure;
        if (kind == common::ErrorKind::connection) {
            // libcurl may see its socket close before the tunnel thread has
            // read why (sshd killed: the channel ends, then the connection):
            // give it a moment to say so.
            for (int i = 0; i < 50; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                if (auto failure = m_tunnel->failure())
                    return *failure;
            }
        }
        return result;
    }

    std::shared_ptr<SshTunnel> m_tunnel;
    std::unique_ptr<Client> m_http;
};

} // namespace

std::vector<std::string> default_agent_command() {
    return {"deploy-agent", "dial-stdio"};
}

std::string agent_socket_of(const SshOptions& options) {
    if (options.agent_socket)
        return *options.agent_socket;
    // A command of the user's own may reach another socket than the default one.
    return options.agent_command.empty() ? k_default_agent_socket : "";
}

common::Result<std::unique_ptr<Client>> make_ssh_client(SshOptions options, std::string display_url,
                                                        HttpOptions http) {
    auto session = open_ssh_session(options);
    if (!session)
        return session.error();
    const auto& words =
        options.agent_command.empty() ? default_agent_command() : options.agent_command;
    auto tunnel =
        SshTunnel::start(std::move(*session), common::shell_join(words), agent_socket_of(options),
                         ssh_address(options), options.keepalive_s);
    if (!tunnel)
        return tunnel.error();
    http.unix_socket = (*tunnel)->socket_path();
    auto client = make_http_client(std::move(display_url), std::move(http));
    return std::unique_ptr<Client>(std::make_unique<SshClient>(
        std::shared_ptr<SshTunnel>(std::move(*tunnel)), std::move(client)));
}

} // namespace cli::transport
