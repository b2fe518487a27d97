#pragma once
// The certificate the agent serves its API's TLS with (--tls-cert/--tls-key or
// tls_cert/tls_key in agent.toml), loaded by deploy-proxy's TlsCertificates
// (TLS 1.2 at least) and loaded again when its files change, so a renewal
// needs no restart. No Asio here: connection.cpp makes the streams.

#include <agent/proxy/tls_certificates.hpp>
#include <common/result.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace agent::api {

class ApiCertificate {
  public:
    // ErrorKind::config naming the file and what is wrong with it (unreadable,
    // not PEM, encrypted key, key of another certificate...).
    static common::Result<std::shared_ptr<ApiCertificate>> load(proxy::CertificateFiles files);

    // What the next handshake uses. When the files changed since they were
    // last read, reads them first; a pair that does not load is logged once
    // and the previous certificate keeps serving.
    std::shared_ptr<const proxy::TlsCertificates> current();
    // "sha256:AB:CD:..." of the certificate being served.
    std::string fingerprint();

  private:
    explicit ApiCertificate(proxy::CertificateFiles files) : m_files{std::move(files)} {}

    std::mutex m_mutex;
    const std::vector<proxy::CertificateFiles> m_files;
    std::vector<std::int64_t> m_stamps; // of the files last read
    std::shared_ptr<const proxy::TlsCertificates> m_loaded;
};

// "sha256 Fingerprint=AB:..." and where it came from, for the log.
std::string describe_api_certificate(const proxy::CertificateInfo& info);

} // namespace agent::api
