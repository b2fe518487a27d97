#include <agent/acme/client.hpp>
#include <common/ascii.hpp>
#include <common/version.hpp>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <thread>

namespace agent::acme {

using common::ErrorKind;
using common::make_error;
using nlohmann::json;

namespace {

constexpr int k_nonce_retries = 5;
constexpr std::chrono::seconds k_poll_min{1};
constexpr std::chrono::seconds k_poll_max{10};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
}

struct Headers {
    std::string location, nonce, content_type;
    long retry_after = 0;
};

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* out) {
    auto* headers = static_cast<Headers*>(out);
    std::string_view line(data, size * count);
    const auto colon = line.find(':');
    if (colon != std::string_view::npos) {
        const std::string name = common::ascii_lower(line.substr(0, colon));
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
            value.remove_prefix(1);
        while (!value.empty() &&
               (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
            value.remove_suffix(1);
        if (name == "location")
            headers->location = value;
        else if (name == "replay-nonce")
            headers->nonce = value;
        else if (name == "content-type")
            headers->content_type = value;
        else if (name == "retry-after") {
            long seconds = 0;
            for (char c : value) {
                if (c < '0' || c > '9') {
                    seconds = 0; // an HTTP date: the default poll interval
                    break;
                }
                seconds = std::min(seconds * 10 + (c - '0'), 3600L);
            }
            headers->retry_after = seconds;
        }
    }
    return size * count;
}

std::string string_at(const json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::chrono::seconds poll_interval(std::chrono::seconds retry_after) {
    return std::clamp(retry_after, k_poll_min, k_poll_max);
}

} // namespace

std::string problem_message(const std::string& body, const std::string& fallback) {
    auto problem = json::parse(body, nullptr, false);
    if (!problem.is_object())
        return fallback;
    std::string type = string_at(problem, "type");
    if (type.rfind("urn:ietf:params:acme:error:", 0) == 0)
        type = type.substr(27);
    std::string out = type.empty() ? fallback : type;
    if (const auto detail = string_at(problem, "detail"); !detail.empty())
        out += ": " + detail;
    if (auto sub = problem.find("subproblems"); sub != problem.end() && sub->is_array())
        for (const auto& item : *sub)
            if (item.is_object())
                out += "; " + string_at(item, "detail");
    return out;
}

Client::Client(ClientOptions options, const EcKey& account, std::string kid)
    : m_options(std::move(options)), m_account(account), m_kid(std::move(kid)) {
    m_curl = curl_easy_init();
}

Client::~Client() {
    if (m_curl != nullptr)
        curl_easy_cleanup(static_cast<CURL*>(m_curl));
}

common::Result<Client::Response> Client::request(const std::string& url, const std::string* jws) {
    auto* curl = static_cast<CURL*>(m_curl);
    if (curl == nullptr)
        return make_error(ErrorKind::internal, "cannot initialize libcurl");
    if (url.rfind("https://", 0) != 0)
        return make_error(ErrorKind::config,
                          "the ACME server gave a URL that is not https: " + url);
    Response out;
    Headers headers;
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(m_options.timeout.count()));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out.body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &headers);
    const std::string agent = "deploy-agent/" + std::string(common::version());
    curl_easy_setopt(curl, CURLOPT_USERAGENT, agent.c_str());
    if (!m_options.ca_file.empty())
        curl_easy_setopt(curl, CURLOPT_CAINFO, m_options.ca_file.c_str());
    curl_slist* list = nullptr;
    if (jws != nullptr) {
        list = curl_slist_append(list, "Content-Type: application/jose+json");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, jws->c_str());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(jws->size()));
    } else if (url == m_new_nonce) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L); // HEAD newNonce
    }
    if (m_options.cancel != nullptr) {
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, m_options.cancel);
        curl_easy_setopt(
            curl, CURLOPT_XFERINFOFUNCTION,
            +[](void* cancel, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
                return static_cast<const std::atomic<bool>*>(cancel)->load() ? 1 : 0;
            });
    }
    char error_text[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_text);
    const CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(list);
    if (code == CURLE_ABORTED_BY_CALLBACK)
        return make_error(ErrorKind::failed, "stopped: the agent is shutting down");
    if (code != CURLE_OK)
        return make_error(ErrorKind::connection,
                          fmt::format("cannot reach the ACME server at {}: {}", url,
                                      error_text[0] ? error_text : curl_easy_strerror(code)));
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
    out.location = headers.location;
    out.nonce = headers.nonce;
    out.content_type = headers.content_type;
    out.retry_after = std::chrono::seconds(headers.retry_after);
    if (!out.nonce.empty())
        m_nonce = out.nonce;
    return out;
}

common::Result<std::string> Client::fresh_nonce() {
    if (!m_nonce.empty())
        return std::exchange(m_nonce, std::string());
    auto response = get(m_new_nonce);
    if (!response)
        return response.error();
    if (response->nonce.empty())
        return make_error(ErrorKind::failed, "the ACME server gave no nonce (HTTP " +
                                                 std::to_string(response->status) + ")");
    m_nonce.clear();
    return response->nonce;
}

common::Result<Client::Response> Client::post(const std::string& url, const std::string& payload,
                                              bool use_jwk) {
    for (int attempt = 0;; ++attempt) {
        auto nonce = fresh_nonce();
        if (!nonce)
            return nonce.error();
        auto body = sign_jws(m_account, use_jwk ? std::string() : m_kid, *nonce, url, payload);
        if (!body)
            return body.error();
        auto response = request(url, &*body);
        if (!response)
            return response.error();
        if (response->status < 400)
            return response;
        const std::string message =
            problem_message(response->body, "HTTP " + std::to_string(response->status));
        if (message.rfind("badNonce", 0) == 0 && attempt + 1 < k_nonce_retries)
            continue; // RFC 8555 §6.5: try again with the nonce of this answer
        const ErrorKind kind = response->status == 401 || response->status == 403
                                   ? ErrorKind::auth
                                   : ErrorKind::failed;
        return make_error(kind, message);
    }
}

common::Status Client::open() {
    auto directory = get(m_options.directory);
    if (!directory)
        return directory.error();
    auto object = json::parse(directory->body, nullptr, false);
    if (directory->status != 200 || !object.is_object())
        return make_error(ErrorKind::failed, fmt::format("{} is not an ACME directory (HTTP {})",
                                                         m_options.directory, directory->status));
    m_new_nonce = string_at(object, "newNonce");
    m_new_account = string_at(object, "newAccount");
    m_new_order = string_at(object, "newOrder");
    if (m_new_nonce.empty() || m_new_account.empty() || m_new_order.empty())
        return make_error(ErrorKind::failed,
                          m_options.directory + " lacks newNonce, newAccount or newOrder");
    const bool eab_required = object.contains("meta") && object["meta"].is_object() &&
                              object["meta"].value("externalAccountRequired", false);
    // newAccount with the key finds the account it already made (200) or makes it (201).
    json account = {{"termsOfServiceAgreed", true}};
    if (!m_options.email.empty())
        account["contact"] = json::array({"mailto:" + m_options.email});
    if (!m_options.eab_kid.empty()) {
        auto binding = external_account_binding(m_account, m_options.eab_kid,
                                                m_options.eab_hmac_key, m_new_account);
        if (!binding)
            return binding.error();
        account["externalAccountBinding"] = std::move(*binding);
    } else if (eab_required) {
        return make_error(ErrorKind::config,
                          m_options.directory +
                              " requires external account binding: set [acme] eab_kid and "
                              "eab_hmac_key from your CA account");
    }
    auto made = post(m_new_account, account.dump(), true);
    if (!made)
        return make_error(made.error().kind,
                          "cannot open the ACME account: " + made.error().message);
    if (made->location.empty())
        return make_error(ErrorKind::failed, "the ACME server gave no account URL");
    m_kid = made->location;
    return {};
}

common::Result<Order> Client::parse_order(const Response& response, const std::string& url) {
    auto object = json::parse(response.body, nullptr, false);
    if (!object.is_object())
        return make_error(ErrorKind::failed, "the ACME server's order is not JSON");
    Order order;
    order.url = url;
    order.status = string_at(object, "status");
    order.finalize = string_at(object, "finalize");
    order.certificate = string_at(object, "certificate");
    if (auto it = object.find("authorizations"); it != object.end() && it->is_array())
        for (const auto& item : *it)
            if (item.is_string())
                order.authorizations.push_back(item.get<std::string>());
    if (auto it = object.find("error"); it != object.end())
        order.error = problem_message(it->dump(), "order failed");
    return order;
}

common::Result<Order> Client::new_order(const std::vector<std::string>& names) {
    json identifiers = json::array();
    for (const auto& name : names)
        identifiers.push_back({{"type", "dns"}, {"value", name}});
    auto response = post(m_new_order, json{{"identifiers", identifiers}}.dump());
    if (!response)
        return response.error();
    if (response->location.empty())
        return make_error(ErrorKind::failed, "the ACME server gave no order URL");
    return parse_order(*response, response->location);
}

common::Result<Order> Client::order_at(const std::string& url) {
    auto response = post(url, "");
    if (!response)
        return response.error();
    return parse_order(*response, url);
}

common::Result<Authorization> Client::authorization(const std::string& url) {
    auto response = post(url, "");
    if (!response)
        return response.error();
    auto object = json::parse(response->body, nullptr, false);
    if (!object.is_object())
        return make_error(ErrorKind::failed, "the ACME server's authorization is not JSON");
    Authorization out;
    out.url = url;
    out.status = string_at(object, "status");
    out.wildcard = object.value("wildcard", false);
    if (auto it = object.find("identifier"); it != object.end() && it->is_object())
        out.identifier = string_at(*it, "value");
    if (auto it = object.find("challenges"); it != object.end() && it->is_array())
        for (const auto& item : *it) {
            if (!item.is_object())
                continue;
            out.challenges.push_back({string_at(item, "type"), string_at(item, "url"),
                                      string_at(item, "token"), string_at(item, "status")});
            if (auto error = item.find("error"); error != item.end())
                out.error = problem_message(error->dump(), "challenge failed");
        }
    return out;
}

common::Status Client::respond(const Challenge& challenge) {
    auto response = post(challenge.url, "{}");
    if (!response)
        return response.error();
    return {};
}

common::Result<Authorization> Client::wait_authorization(const std::string& url,
                                                         std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto authz = authorization(url);
        if (!authz || authz->status != "pending" || std::chrono::steady_clock::now() >= deadline ||
            cancelled())
            return authz;
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
}

common::Result<std::string> Client::finalize(const Order& order, const std::string& csr_der,
                                             std::chrono::seconds timeout) {
    auto response = post(order.finalize, json{{"csr", base64url(csr_der)}}.dump());
    if (!response)
        return response.error();
    auto current = parse_order(*response, order.url);
    if (!current)
        return current.error();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (current->status == "processing" || current->status == "ready") {
        if (cancelled())
            return make_error(ErrorKind::failed, "stopped: the agent is shutting down");
        if (std::chrono::steady_clock::now() >= deadline)
            return make_error(ErrorKind::timeout, "the ACME server did not issue the "
                                                  "certificate in time (order still " +
                                                      current->status + ")");
        std::this_thread::sleep_for(
            std::min(poll_interval(response->retry_after), std::chrono::seconds(1)));
        current = order_at(order.url);
        if (!current)
            return current.error();
    }
    if (current->status != "valid" || current->certificate.empty())
        return make_error(ErrorKind::failed,
                          "the order is " + current->status +
                              (current->error.empty() ? "" : ": " + current->error));
    auto certificate = post(current->certificate, "");
    if (!certificate)
        return certificate.error();
    if (certificate->body.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
        return make_error(ErrorKind::failed, "the ACME server's certificate is not PEM");
    return certificate->body;
}

} // namespace agent::acme
