#include <agent/api/json.hpp>
#include <common/timestamp.hpp>

#include <nlohmann/json.hpp>

namespace agent::api {

using nlohmann::json;

namespace {

json string_or_null(const std::string& text) {
    return text.empty() ? json(nullptr) : json(text);
}

json optional_or_null(const std::optional<std::string>& text) {
    return text ? json(*text) : json(nullptr);
}

json served_to_json(const std::vector<ServedSpan>& served) {
    json spans = json::array();
    for (const auto& span : served)
        spans.push_back({{"from", span.from}, {"until", string_or_null(span.until)}});
    return spans;
}

} // namespace

json release_to_json(const ReleaseInfo& release) {
    return {{"id", release.id},
            {"app", release.app},
            {"state", std::string(common::to_string(release.state))},
            {"created_at", release.created_at},
            {"updated_at", release.updated_at},
            {"commit", release.commit},
            {"message", release.message},
            {"error", string_or_null(release.error)},
            {"port", release.port == 0 ? json(nullptr) : json(release.port)},
            // Replaced but still running, unrouted ([deploy] standby): a warm rollback target.
            {"standby", release.state == common::State::inactive && release.port != 0},
            {"dirty", release.dirty},
            {"tree_digest", string_or_null(release.tree_digest)},
            {"config_digest", string_or_null(release.config_digest)},
            {"served", served_to_json(release.served)}};
}

namespace {
json drain_to_json(const std::optional<DrainStatus>& drain) {
    if (!drain)
        return nullptr;
    return {{"url", drain->url},
            {"connected", drain->connected},
            {"queued_bytes", drain->queued_bytes},
            {"delivered", drain->delivered},
            {"dropped", drain->dropped},
            {"last_error", string_or_null(drain->last_error)}};
}
} // namespace

json status_to_json(const AppStatus& status) {
    json releases = json::array();
    for (const auto& release : status.releases)
        releases.push_back(release_to_json(release));
    return {{"app", status.app},
            {"production", optional_or_null(status.production)},
            {"state", status.state},
            {"previous", optional_or_null(status.previous)},
            {"next_release", string_or_null(status.next_release)},
            {"url", status.url},
            {"domains", status.domains},
            {"releases", std::move(releases)},
            {"drain", drain_to_json(status.drain)}};
}

json certificate_to_json(const acme::CertificateStatus& c) {
    auto time = [](std::int64_t unix) {
        return unix == 0 ? json(nullptr)
                         : json(common::format_micros(unix * 1'000'000).substr(0, 19) + "Z");
    };
    return {{"name", c.name},
            {"state", c.state},
            {"on_demand", c.on_demand},
            {"issuer", string_or_null(c.issuer)},
            {"not_before", time(c.not_before)},
            {"not_after", time(c.not_after)},
            {"renew_at", time(c.renew_at)},
            {"last_renewal", time(c.last_renewal)},
            {"next_attempt", time(c.next_attempt)},
            {"last_error", string_or_null(c.last_error)},
            {"failures", c.failures}};
}

json app_summary_to_json(const AppStatus& status) {
    return {{"app", status.app},
            {"production", optional_or_null(status.production)},
            {"state", status.state},
            {"commit", string_or_null(status.commit)},
            {"url", status.url}};
}

json done_event(const ReleaseInfo& release, const std::string& url) {
    const bool failed = release.state == common::State::failed;
    return {{"event", "done"},
            {"release", release.id},
            {"state", std::string(common::to_string(release.state))},
            {"url", failed ? json(nullptr) : string_or_null(url)},
            {"error", failed ? json(release.error) : json(nullptr)}};
}

std::string to_line(const json& value) {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace agent::api
