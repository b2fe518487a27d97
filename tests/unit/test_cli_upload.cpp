#include <cli/output/events.hpp>
#include <cli/output/printer.hpp>
#include <cli/package/git_tree.hpp>
#include <cli/release/steps.hpp>
#include <cli/transport/client.hpp>
#include <common/hash.hpp>
#include <common/tree.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <zstd.h>

#include "git_repo.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// What an agent with an empty store was sent: the blobs of each POST /v1/blobs, by the
// connection (client) that sent them, and how many requests were in flight at once.
struct Received {
    std::mutex mutex;
    std::map<int, int> requests_by_client;
    std::set<std::string> digests;
    int in_flight = 0, most_in_flight = 0;
    int fail_on_request = 0; // the Nth POST /v1/blobs is refused (0: none)
    int requests = 0;
};

// The frames of a POST /v1/blobs body: "DIGEST SIZE raw|zstd LENGTH\n" then the bytes.
std::vector<std::string> frame_digests(std::string body, std::string_view encoding) {
    if (encoding == "zstd") {
        std::string plain(ZSTD_getFrameContentSize(body.data(), body.size()), '\0');
        const auto n = ZSTD_decompress(plain.data(), plain.size(), body.data(), body.size());
        REQUIRE_FALSE(ZSTD_isError(n));
        plain.resize(n);
        body = std::move(plain);
    }
    std::vector<std::string> out;
    std::size_t at = 0;
    while (at < body.size()) {
        const auto nl = body.find('\n', at);
        REQUIRE(nl != std::string::npos);
        std::istringstream head(body.substr(at, nl - at));
        std::string digest, kind;
        std::size_t size = 0, length = 0;
        head >> digest >> size >> kind >> length;
        CHECK(common::sha256_hex(std::string_view(body).substr(nl + 1, length)) == digest);
        out.push_back(digest);
        at = nl + 1 + length;
    }
    return out;
}

// An agent that lacks every node and blob; `another()` gives a client of its own id.
class EmptyAgent final : public cli::transport::Client {
  public:
    EmptyAgent(Received& received, int id) : m_received(received), m_id(id) {}
    const std::string& url() const override { return m_url; }
    common::Result<json> get_json(std::string_view) override { return json::object(); }
    common::Result<json> post_json(std::string_view path, const json& body) override {
        REQUIRE(path == "/v1/trees/missing");
        return trees_missing(body);
    }
    common::Result<json> put_blob(std::string_view, std::string_view) override {
        return common::make_error(common::ErrorKind::internal, "no PUT expected");
    }
    common::Result<json> post_bytes(std::string_view path, std::string_view bytes, std::string_view,
                                    std::string_view encoding) override {
        if (path == "/v1/trees/missing") {
            std::string plain(ZSTD_getFrameContentSize(bytes.data(), bytes.size()), '\0');
            plain.resize(ZSTD_decompress(plain.data(), plain.size(), bytes.data(), bytes.size()));
            return trees_missing(json::parse(plain));
        }
        REQUIRE(path == "/v1/blobs");
        int nth = 0;
        {
            std::lock_guard lock(m_received.mutex);
            nth = ++m_received.requests;
            ++m_received.requests_by_client[m_id];
            m_received.most_in_flight = std::max(m_received.most_in_flight, ++m_received.in_flight);
        }
        const auto digests = frame_digests(std::string(bytes), encoding);
        std::this_thread::sleep_for(std::chrono::milliseconds(100)); // storing takes a while
        std::lock_guard lock(m_received.mutex);
        --m_received.in_flight;
        if (nth == m_received.fail_on_request)
            return common::make_error(common::ErrorKind::disk_full, "the agent's disk is full");
        m_received.digests.insert(digests.begin(), digests.end());
        return json{{"stored", digests.size()}};
    }
    common::Result<json> remove(std::string_view) override { return json::object(); }
    common::Status stream_ndjson(std::string_view, const cli::transport::LineHandler&) override {
        return {};
    }
    std::unique_ptr<cli::transport::Client> another() const override {
        return std::make_unique<EmptyAgent>(m_received, m_id + 1);
    }

  private:
    // Every node asked about or sent is missing, and so is every file of a node sent.
    common::Result<json> trees_missing(const json& body) {
        json nodes = json::array(), blobs = json::array();
        if (body.contains("roots"))
            nodes = body["roots"];
        for (const auto& text : body.value("nodes", json::array())) {
            auto node = common::parse_node(text.get<std::string>());
            REQUIRE(node);
            for (const auto& e : node->entries)
                if (e.kind == common::TreeEntry::Kind::tree)
                    nodes.push_back(e.digest);
                else if (e.kind != common::TreeEntry::Kind::symlink)
                    blobs.push_back(e.digest);
        }
        return json{{"missing_nodes", nodes}, {"missing_blobs", blobs}};
    }

    Received& m_received;
    int m_id;
    std::string m_url = "http://127.0.0.1:7070";
};

class Quiet final : public cli::output::Printer {
  public:
    void emit(const cli::output::Event&) override {}
};

// A repository of `files` files of 512 KiB of random bytes each (nothing compresses).
struct BigRepo {
    test::TempDir tmp;
    std::set<std::string> digests;

    explicit BigRepo(int files) {
        REQUIRE(test::git(tmp.path(), {"init", "-q"}));
        std::mt19937_64 rng(7);
        for (int i = 0; i < files; ++i) {
            std::string bytes(512 * 1024, '\0');
            for (auto& c : bytes)
                c = static_cast<char>(rng());
            test::write(tmp.path() / ("lib/part" + std::to_string(i) + ".bin"), bytes);
            digests.insert(common::sha256_hex(bytes));
        }
        REQUIRE(test::git(tmp.path(), {"add", "-A"}));
        REQUIRE(test::git(tmp.path(), {"commit", "-q", "-m", "big"}));
    }
};

} // namespace

TEST_CASE("upload: more than one batch goes on two connections at once, every blob once") {
    BigRepo repo(48); // 24 MiB: three batches or more
    auto tree = cli::package::package_source(repo.tmp.path(), cli::package::Mode::committed);
    REQUIRE(tree);
    Received received;
    EmptyAgent agent(received, 0);
    Quiet out;
    auto stats = cli::release::upload_blobs(agent, *tree, out, agent.url());
    REQUIRE_MESSAGE(stats, (stats ? "" : stats.error().message));
    CHECK(received.digests == repo.digests);
    CHECK(stats->blobs_missing == repo.digests.size());
    CHECK(stats->bytes_sent == 48u * 512 * 1024);
    CHECK(received.requests_by_client.size() == 2); // both connections sent batches
    CHECK(received.most_in_flight == 2);            // at the same time
}

TEST_CASE("upload: a batch refused on either connection ends the upload with its error") {
    BigRepo repo(48);
    auto tree = cli::package::package_source(repo.tmp.path(), cli::package::Mode::committed);
    REQUIRE(tree);
    for (int refused : {1, 2}) {
        CAPTURE(refused);
        Received received;
        received.fail_on_request = refused;
        EmptyAgent agent(received, 0);
        Quiet out;
        auto stats = cli::release::upload_blobs(agent, *tree, out, agent.url());
        REQUIRE_FALSE(stats);
        CHECK(stats.error().kind == common::ErrorKind::disk_full);
        // The other connection ends with its request in flight: nothing more is sent.
        CHECK(received.requests <= 3);
        CHECK(received.digests.size() < repo.digests.size());
    }
}
