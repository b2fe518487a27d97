#include <agent/proxy/access_log.hpp>
#include <common/config.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace agent::proxy {

namespace {

constexpr char k_hex[] = "0123456789abcdef";

void append_string(std::string& out, std::string_view value) {
    out.push_back('"');
    for (const char c : value) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte == '"' || byte == '\\') {
            out.push_back('\\');
            out.push_back(c);
        } else if (byte < 0x20 || byte > 0x7e) {
            out.append("\\u00");
            out.push_back(k_hex[byte >> 4]);
            out.push_back(k_hex[byte & 0xf]);
        } else {
            out.push_back(c);
        }
    }
    out.push_back('"');
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(",\"");
    out.append(name);
    out.append("\":");
    append_string(out, value);
}

template <class Number> void append_number(std::string& out, std::string_view name, Number n) {
    fmt::format_to(std::back_inserter(out), ",\"{}\":{}", name, n);
}

} // namespace

void append_access_line(std::string& out, const AccessRecord& r) {
    out.append("{\"time\":");
    append_string(out, r.time);
    append_field(out, "release", r.release);
    append_field(out, "instance", r.instance);
    append_field(out, "upstream", r.upstream);
    append_field(out, "client", r.client);
    append_field(out, "method", r.method);
    append_field(out, "host", r.host);
    append_field(out, "path", r.path);
    append_number(out, "status", r.status);
    fmt::format_to(std::back_inserter(out), ",\"duration_ms\":{:.3f}", r.duration_ms);
    append_number(out, "bytes_in", r.bytes_in);
    append_number(out, "bytes_out", r.bytes_out);
    append_field(out, "request_id", r.request_id);
    out.append("}\n");
}

bool acceptable_request_id(std::string_view value) {
    if (value.empty() || value.size() > 200) {
        return false;
    }
    for (const char c : value) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || std::strchr("._~+/=:-", c) != nullptr;
        if (!ok || c == '\0') {
            return false;
        }
    }
    return true;
}

RequestIds::RequestIds() {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    m_random.seed(seed);
}

void RequestIds::next(std::string& out) {
    out.resize(32);
    for (int half = 0; half < 2; ++half) {
        std::uint64_t bits = m_random();
        for (int i = 0; i < 16; ++i, bits >>= 4) {
            out[static_cast<std::size_t>(half * 16 + i)] = k_hex[bits & 0xf];
        }
    }
}

std::string_view AccessClock::now() {
    const auto now = std::chrono::system_clock::now();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    const std::int64_t second = ms / 1000;
    if (second != m_second) {
        m_second = second;
        const std::time_t t = static_cast<std::time_t>(second);
        std::tm tm{};
        gmtime_r(&t, &tm);
        char buffer[32];
        const auto n = std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S.", &tm);
        m_prefix.assign(buffer, n);
    }
    m_text = m_prefix;
    fmt::format_to(std::back_inserter(m_text), "{:03}Z", ms % 1000);
    return m_text;
}

void AccessBuffer::append(const std::string& app, const AccessRecord& record) {
    m_line.clear();
    append_access_line(m_line, record);
    const std::lock_guard lock(m_mutex);
    if (m_pending + m_line.size() > k_max_pending) {
        ++m_dropped;
        return;
    }
    m_pending += m_line.size();
    auto found = m_lines.find(app);
    if (found == m_lines.end()) {
        found = m_lines.emplace(app, std::string()).first;
    }
    found->second.append(m_line);
}

std::uint64_t AccessBuffer::take(std::map<std::string, std::string>& into) {
    const std::lock_guard lock(m_mutex);
    for (auto& [app, lines] : m_lines) {
        if (!lines.empty()) {
            into[app].append(lines);
            lines.clear(); // keeps its capacity for the next second's lines
        }
    }
    m_pending = 0;
    return std::exchange(m_dropped, 0);
}

std::map<std::string, std::string>
merge_access_lines(std::vector<std::map<std::string, std::string>> parts) {
    std::map<std::string, std::string> merged;
    std::map<std::string, std::vector<std::string*>> texts;
    for (auto& part : parts) {
        for (auto& [app, text] : part) {
            if (!text.empty()) {
                texts[app].push_back(&text);
            }
        }
    }
    // Every line starts {"time":"2026-12-06T04:42:07.125Z": its first 33
    // bytes compare as its time.
    constexpr std::size_t k_time_end = 33;
    for (auto& [app, sources] : texts) {
        auto& out = merged[app];
        if (sources.size() == 1) {
            out = std::move(*sources.front());
            continue;
        }
        std::vector<std::string_view> views;
        for (const auto* source : sources) {
            views.emplace_back(*source);
        }
        while (!views.empty()) {
            std::size_t oldest = 0;
            for (std::size_t i = 1; i < views.size(); ++i) {
                if (views[i].substr(0, k_time_end) < views[oldest].substr(0, k_time_end)) {
                    oldest = i;
                }
            }
            auto& view = views[oldest];
            const auto end = view.find('\n');
            const auto length = end == std::string_view::npos ? view.size() : end + 1;
            out.append(view.substr(0, length));
            view.remove_prefix(length);
            if (view.empty()) {
                views.erase(views.begin() + static_cast<std::ptrdiff_t>(oldest));
            }
        }
    }
    return merged;
}

AccessLogFiles::AccessLogFiles(std::filesystem::path dir, std::uint64_t max_size)
    : m_dir(std::move(dir)), m_max_size(max_size) {}

AccessLogFiles::~AccessLogFiles() {
    close_all();
}

std::filesystem::path AccessLogFiles::file(const std::filesystem::path& dir, std::string_view app) {
    return dir / std::string(app) / "logs" / "access.ndjson";
}

void AccessLogFiles::close_all() {
    for (auto& [app, open] : m_files) {
        if (open.fd >= 0) {
            ::close(open.fd);
        }
    }
    m_files.clear();
}

bool AccessLogFiles::open(const std::string& app, Open& file) {
    if (file.fd >= 0) {
        ::close(file.fd);
        file.fd = -1;
    }
    const auto path = AccessLogFiles::file(m_dir, app);
    // No O_CREAT of directories: an app that is not (or no longer) on this
    // agent has no logs directory, and its lines go nowhere.
    file.fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (file.fd < 0) {
        if (errno != ENOENT && !file.failing) {
            common::log_warn(fmt::format("cannot open the access log {}: {}", path.string(),
                                         std::strerror(errno)));
            file.failing = true;
        }
        return false;
    }
    struct stat st {};
    file.size = ::fstat(file.fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    return true;
}

void AccessLogFiles::rotate(const std::string& app, Open& file) {
    const auto path = AccessLogFiles::file(m_dir, app);
    auto old = path;
    old += ".1";
    if (::rename(path.c_str(), old.c_str()) != 0 && errno != ENOENT) {
        common::log_warn(fmt::format("cannot rotate the access log {}: {}", path.string(),
                                     std::strerror(errno)));
    }
    open(app, file);
}

void AccessLogFiles::write(const std::map<std::string, std::string>& lines) {
    for (const auto& [app, text] : lines) {
        if (text.empty() || !common::is_valid_app_name(app)) {
            continue;
        }
        auto& file = m_files[app];
        // Opened again when the file is gone or was replaced (another
        // deploy-proxy rotated it while both ran, or the app was destroyed).
        const auto path = AccessLogFiles::file(m_dir, app);
        struct stat named {};
        struct stat held {};
        if (file.fd < 0 || ::stat(path.c_str(), &named) != 0 || ::fstat(file.fd, &held) != 0 ||
            named.st_ino != held.st_ino || named.st_dev != held.st_dev) {
            if (!open(app, file)) {
                continue;
            }
        } else {
            file.size = static_cast<std::uint64_t>(held.st_size);
        }
        if (m_max_size > 0 && file.size > 0 && file.size + text.size() > m_max_size) {
            rotate(app, file);
            if (file.fd < 0) {
                continue;
            }
        }
        std::size_t done = 0;
        while (done < text.size()) {
            const auto n = ::write(file.fd, text.data() + done, text.size() - done);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                if (!file.failing) {
                    common::log_warn(fmt::format("cannot write the access log {}: {}",
                                                 path.string(), std::strerror(errno)));
                    file.failing = true;
                }
                break;
            }
            done += static_cast<std::size_t>(n);
        }
        if (done != text.size() && done > 0 &&
            ::ftruncate(file.fd, static_cast<off_t>(file.size)) == 0) {
            done = 0; // no piece of a line is left for the next one to run into
        }
        file.size += done;
        if (done == text.size() && file.failing) {
            file.failing = false;
            common::log_info("writing the access log " + path.string() + " again");
        }
    }
}

} // namespace agent::proxy
