#include <agent/api/tls.hpp>
#include <common/fingerprint.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

namespace agent::api {

common::Result<std::shared_ptr<ApiCertificate>>
ApiCertificate::load(proxy::CertificateFiles files) {
    std::shared_ptr<ApiCertificate> out(new ApiCertificate(std::move(files)));
    out->m_stamps = proxy::file_stamps(out->m_files);
    auto loaded = proxy::TlsCertificates::load(out->m_files, proxy::HostNames::optional);
    if (!loaded)
        return loaded.error();
    out->m_loaded = std::move(*loaded);
    return out;
}

std::shared_ptr<const proxy::TlsCertificates> ApiCertificate::current() {
    std::lock_guard lock(m_mutex);
    auto stamps = proxy::file_stamps(m_files);
    if (stamps == m_stamps)
        return m_loaded;
    m_stamps = std::move(stamps); // a broken pair is reported once, not at every connection
    auto loaded = proxy::TlsCertificates::load(m_files, proxy::HostNames::optional);
    if (!loaded) {
        common::log_error(fmt::format("API certificate not reloaded: {}; still serving {}",
                                      loaded.error().message,
                                      m_loaded->certificates().front().fingerprint));
        return m_loaded;
    }
    m_loaded = std::move(*loaded);
    common::log_info("API certificate reloaded: " +
                     describe_api_certificate(m_loaded->certificates().front()));
    return m_loaded;
}

std::string ApiCertificate::fingerprint() {
    return current()->certificates().front().fingerprint;
}

std::string describe_api_certificate(const proxy::CertificateInfo& info) {
    const auto expires = std::chrono::system_clock::to_time_t(info.not_after);
    std::tm tm{};
    gmtime_r(&expires, &tm);
    return fmt::format("{} (valid until {:04}-{:02}-{:02}), {}", info.cert_path, tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday,
                       common::openssl_fingerprint_form(info.fingerprint));
}

} // namespace agent::api
