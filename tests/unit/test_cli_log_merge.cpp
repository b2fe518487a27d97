#include <cli/log_merge.hpp>

#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

using cli::LogMerge;
using nlohmann::json;

namespace {

json line(const std::string& ts, const std::string& text) {
    json event{{"event", "log"}, {"line", text}};
    if (!ts.empty())
        event["ts"] = ts;
    return event;
}

struct Collected {
    std::vector<std::string> lines;
    std::vector<std::string> ends;
};

Collected run(LogMerge& merge) {
    Collected out;
    merge.run(
        [&](std::size_t source, const json& event) {
            out.lines.push_back(std::to_string(source) + ":" + event["line"].get<std::string>());
            return true;
        },
        [&](std::size_t source, const common::Status& status) {
            out.ends.push_back(std::to_string(source) +
                               (status ? ":ok" : ":" + status.error().message));
        });
    return out;
}

} // namespace

TEST_CASE("LogMerge: several hosts' lines in time order, each host's end after its lines") {
    LogMerge merge(3, std::chrono::milliseconds(0), 2); // room for 2 waiting lines each
    std::thread a([&] {
        merge.push(0, line("2026-12-04T10:00:01.000000Z", "a1"));
        merge.push(0, line("", "a1 continued")); // no time: with the line before it
        merge.push(0, line("2026-12-04T10:00:05.000Z", "a5"));
        merge.push(0, line("2026-12-04T10:00:07.000000Z", "a7"));
        merge.end(0, {});
    });
    std::thread b([&] {
        merge.push(1, line("2026-12-04T10:00:02.000000Z", "b2"));
        merge.push(1, line("2026-12-04T11:00:03.000000+01:00", "b3")); // 10:00:03 UTC
        merge.push(1, line("2026-12-04T10:00:06.000000Z", "b6"));
        merge.end(1, {});
    });
    std::thread c([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50)); // late, and says why
        merge.push(2, line("2026-12-04T10:00:04.000000Z", "c4"));
        merge.end(2, common::make_error(common::ErrorKind::connection, "gone"));
    });
    auto out = run(merge);
    a.join();
    b.join();
    c.join();
    CHECK(out.lines == std::vector<std::string>{"0:a1", "0:a1 continued", "1:b2", "1:b3", "2:c4",
                                                "0:a5", "1:b6", "0:a7"});
    REQUIRE(out.ends.size() == 3);
    CHECK(out.ends[0] == "2:gone"); // after c4, before a5
}

TEST_CASE("LogMerge following: a quiet host holds a line back no longer than the hold") {
    LogMerge merge(2, std::chrono::milliseconds(100));
    std::vector<std::string> lines;
    const auto start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration waited{};
    std::thread reader([&] {
        merge.push(0, line("2026-12-04T10:00:02.000000Z", "second"));
        merge.push(1, line("2026-12-04T10:00:01.000000Z", "first")); // arrived later, earlier time
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
        merge.end(0, {});
        merge.end(1, {});
    });
    merge.run(
        [&](std::size_t, const json& event) {
            lines.push_back(event["line"]);
            if (lines.size() == 2)
                waited = std::chrono::steady_clock::now() - start;
            return true;
        },
        [](std::size_t, const common::Status&) {});
    reader.join();
    CHECK(lines == std::vector<std::string>{"first", "second"});
    CHECK(waited < std::chrono::milliseconds(350)); // not held until the streams ended
}

TEST_CASE("LogMerge: once the output stops, readers waiting for room are let go") {
    LogMerge merge(2, std::chrono::milliseconds(0), 1);
    std::thread reader([&] {
        merge.push(0, line("2026-12-04T10:00:01.000000Z", "a"));
        merge.push(1, line("2026-12-04T10:00:02.000000Z", "b"));
        bool taken = true;
        for (int i = 0; i < 5 && taken; ++i)
            taken = merge.push(0, line("2026-12-04T10:00:03.000000Z", "more"));
        CHECK_FALSE(taken);
    });
    merge.run([](std::size_t, const json&) { return false; },
              [](std::size_t, const common::Status&) {});
    reader.join();
}
