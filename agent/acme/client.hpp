#pragma once
// An ACME client (RFC 8555) on libcurl: the directory, nonces (a badNonce is
// retried with the nonce its answer carries), the account (made or found by
// its key, with external account binding when the CA wants it), orders,
// authorizations and their challenges, finalization and the certificate's
// download. Blocking; one instance per thread.

#include <agent/acme/crypto.hpp>
#include <common/result.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

namespace agent::acme {

struct ClientOptions {
    std::string directory;    // the CA's directory URL
    std::string ca_file;      // extra CA bundle (PEM) to trust the CA's server; "" = system's
    std::string email;        // the account's contact ("" = none)
    std::string eab_kid;      // external account binding, both or neither
    std::string eab_hmac_key; // base64url
    std::chrono::seconds timeout{30}; // each HTTP request
    // Set by the agent's stop: a request under way and the polls end at once.
    const std::atomic<bool>* cancel = nullptr;
};

struct Challenge {
    std::string type; // http-01, tls-alpn-01, dns-01
    std::string url;
    std::string token;
    std::string status;
};

struct Authorization {
    std::string url;
    std::string identifier; // the name, without "*." for a wildcard
    bool wildcard = false;
    std::string status; // pending, valid, invalid, ...
    std::vector<Challenge> challenges;
    std::string error; // why it is invalid, from the failed challenge
};

struct Order {
    std::string url;
    std::string status; // pending, ready, processing, valid, invalid
    std::vector<std::string> authorizations;
    std::string finalize;
    std::string certificate;
    std::string error;
};

class Client {
  public:
    Client(ClientOptions options, const EcKey& account, std::string kid = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Reads the directory and makes (or finds) the account; kid() is its URL.
    common::Status open();
    const std::string& kid() const { return m_kid; }

    common::Result<Order> new_order(const std::vector<std::string>& names);
    common::Result<Authorization> authorization(const std::string& url);
    // Tells the CA the challenge is ready to be validated.
    common::Status respond(const Challenge& challenge);
    // Polls until the authorization is no longer pending (or `timeout`).
    common::Result<Authorization> wait_authorization(const std::string& url,
                                                     std::chrono::seconds timeout);
    // Sends the CSR and polls until the order is valid; returns the PEM chain.
    common::Result<std::string> finalize(const Order& order, const std::string& csr_der,
                                         std::chrono::seconds timeout);

  private:
    bool cancelled() const { return m_options.cancel != nullptr && m_options.cancel->load(); }
    struct Response {
        long status = 0;
        std::string body;
        std::string location;
        std::string nonce;
        std::string content_type;
        std::chrono::seconds retry_after{0};
    };
    common::Result<Response> request(const std::string& url, const std::string* jws);
    common::Result<Response> get(const std::string& url) { return request(url, nullptr); }
    // A signed POST (POST-as-GET when `payload` is empty), again on badNonce.
    common::Result<Response> post(const std::string& url, const std::string& payload,
                                  bool use_jwk = false);
    common::Result<std::string> fresh_nonce();
    common::Result<Order> order_at(const std::string& url);
    static common::Result<Order> parse_order(const Response& response, const std::string& url);

    ClientOptions m_options;
    const EcKey& m_account;
    std::string m_kid;
    void* m_curl = nullptr; // CURL*, reused: keep-alive to the CA
    std::string m_new_nonce, m_new_account, m_new_order;
    std::string m_nonce; // the last Replay-Nonce, used once
};

// The message of an ACME problem document (RFC 7807) "TYPE: detail", with
// the subproblems' details; `fallback` when `body` is not one.
std::string problem_message(const std::string& body, const std::string& fallback);

} // namespace agent::acme
