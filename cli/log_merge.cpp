#include <cli/log_merge.hpp>
#include <common/timestamp.hpp>

namespace cli {

LogMerge::LogMerge(std::size_t sources, std::chrono::milliseconds hold, std::size_t cap)
    : m_sources(sources), m_hold(hold), m_cap(cap) {}

bool LogMerge::push(std::size_t source, nlohmann::json event) {
    std::unique_lock lock(m_mutex);
    auto& s = m_sources.at(source);
    m_changed.wait(lock, [&] { return m_stopped || s.items.size() < m_cap; });
    if (m_stopped)
        return false;
    std::optional<std::int64_t> at;
    if (auto it = event.find("ts"); it != event.end() && it->is_string())
        at = common::parse_rfc3339(it->get_ref<const std::string&>());
    if (at)
        s.last_key = *at;
    s.items.push_back({s.last_key, Clock::now(), std::move(event)});
    m_changed.notify_all();
    return true;
}

void LogMerge::end(std::size_t source, common::Status status) {
    std::lock_guard lock(m_mutex);
    m_sources.at(source).ended = std::move(status);
    m_changed.notify_all();
}

void LogMerge::stop() {
    std::lock_guard lock(m_mutex);
    m_stopped = true;
    m_changed.notify_all();
}

void LogMerge::run(const std::function<bool(std::size_t, const nlohmann::json&)>& event,
                   const std::function<void(std::size_t, const common::Status&)>& ended) {
    std::unique_lock lock(m_mutex);
    while (true) {
        // Sources that ended with nothing left: say so once.
        bool all_done = true;
        for (std::size_t i = 0; i < m_sources.size(); ++i) {
            auto& s = m_sources[i];
            if (s.ended && s.items.empty() && !s.reported) {
                s.reported = true;
                auto status = *s.ended;
                lock.unlock();
                ended(i, status);
                lock.lock();
            }
            all_done = all_done && s.reported;
        }
        if (all_done)
            return;
        // The earliest waiting event, and whether every source still going has one.
        std::optional<std::size_t> first;
        bool complete = true;
        for (std::size_t i = 0; i < m_sources.size(); ++i) {
            const auto& s = m_sources[i];
            if (s.items.empty()) {
                complete = complete && s.ended.has_value();
                continue;
            }
            if (!first || s.items.front().key < m_sources[*first].items.front().key)
                first = i;
        }
        if (!first) {
            m_changed.wait(lock);
            continue;
        }
        const auto due = m_sources[*first].items.front().arrived + m_hold;
        if (!complete && (m_hold.count() == 0 || Clock::now() < due)) {
            if (m_hold.count() == 0)
                m_changed.wait(lock);
            else
                m_changed.wait_until(lock, due);
            continue;
        }
        Item item = std::move(m_sources[*first].items.front());
        m_sources[*first].items.pop_front();
        m_changed.notify_all(); // a reader waiting for room
        lock.unlock();
        const bool going = event(*first, item.event);
        lock.lock();
        if (!going) {
            m_stopped = true;
            m_changed.notify_all();
            return;
        }
    }
}

} // namespace cli
