#include <cli/package/git_tree.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using cli::package::Mode;
using cli::package::package_source;
using common::EntryKind;

namespace {

// Runs git with argv (no shell) in `dir`; true when it exits 0.
bool git(const fs::path& dir, std::vector<std::string> args) {
    std::vector<std::string> argv = {"git",
                                     "-C",
                                     dir.string(),
                                     "-c",
                                     "user.name=Test",
                                     "-c",
                                     "user.email=test@example.com",
                                     "-c",
                                     "init.defaultBranch=main",
                                     "-c",
                                     "commit.gpgsign=false"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> c_argv;
    for (auto& a : argv)
        c_argv.push_back(a.data());
    c_argv.push_back(nullptr);
    std::fflush(nullptr); // or the child flushes our buffered output again
    pid_t pid = fork();
    if (pid == 0) {
        if (std::freopen("/dev/null", "w", stdout) == nullptr)
            _exit(126);
        execvp("git", c_argv.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void write(const fs::path& path, const std::string& content) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
}

std::map<std::string, common::ManifestEntry> by_path(const cli::package::SourceTree& tree) {
    std::map<std::string, common::ManifestEntry> out;
    for (const auto& e : tree.manifest().entries)
        out[e.path] = e;
    return out;
}

// A repository with an app in app/, an ignored file, an executable and a symlink.
struct Repo {
    test::TempDir tmp;
    fs::path root = tmp.path();
    fs::path app = root / "app";

    Repo() {
        REQUIRE(git(root, {"init", "-q"}));
        write(root / ".gitignore", "*.log\n.env\n");
        write(root / "README", "top level\n");
        write(app / "deploy.toml", "app = \"hello\"\n");
        write(app / "index.html", "<h1>hello</h1>\n");
        write(app / "bin/start", "#!/bin/sh\nexec echo hi\n");
        fs::permissions(app / "bin/start", fs::perms::owner_all, fs::perm_options::add);
        fs::create_symlink("bin/start", app / "current");
        write(app / "debug.log", "ignored\n");
        write(app / ".env", "SECRET=1\n");
        REQUIRE(git(root, {"add", "-A"}));
        REQUIRE(git(root, {"commit", "-q", "-m", "Fix header\n\nLonger body."}));
    }
};

} // namespace

TEST_CASE("package_source: the committed tree of an app in a subdirectory") {
    Repo repo;
    auto tree = package_source(repo.app, Mode::committed);
    REQUIRE_MESSAGE(tree, (tree ? "" : tree.error().message));
    auto files = by_path(*tree);
    CHECK(files.size() == 4);
    REQUIRE(files.count("index.html"));
    CHECK(files["index.html"].kind == EntryKind::file);
    CHECK(files["index.html"].digest == common::sha256_hex("<h1>hello</h1>\n"));
    CHECK(files["index.html"].size == 15);
    CHECK(files["bin/start"].kind == EntryKind::executable);
    CHECK(files["current"].kind == EntryKind::symlink);
    CHECK(files["current"].target == "bin/start");
    CHECK(files.count("deploy.toml"));
    CHECK_FALSE(files.count("debug.log"));
    CHECK_FALSE(files.count(".env"));
    CHECK_FALSE(files.count("README")); // outside DIR
    CHECK(tree->commit().size() == 40);
    CHECK(tree->message() == "Fix header");
    CHECK_FALSE(tree->dirty());
    CHECK(tree->uncommitted() == 0);

    SUBCASE("read() returns a file's bytes by digest") {
        auto bytes = tree->read(files["bin/start"].digest);
        REQUIRE(bytes);
        CHECK(*bytes == "#!/bin/sh\nexec echo hi\n");
    }
}

TEST_CASE("package_source: the repository root") {
    Repo repo;
    auto tree = package_source(repo.root, Mode::committed);
    REQUIRE(tree);
    auto files = by_path(*tree);
    CHECK(files.count("README"));
    CHECK(files.count(".gitignore"));
    CHECK(files.count("app/index.html"));
    CHECK(files.size() == 6);
}

TEST_CASE("package_source: uncommitted changes are counted, not deployed") {
    Repo repo;
    write(repo.app / "index.html", "<h1>changed</h1>\n");
    write(repo.app / "new.txt", "new\n");
    write(repo.app / "more.log", "ignored\n");
    fs::remove(repo.app / "current");
    write(repo.root / "README", "outside the app\n");
    auto tree = package_source(repo.app, Mode::committed);
    REQUIRE(tree);
    auto files = by_path(*tree);
    CHECK(files["index.html"].digest == common::sha256_hex("<h1>hello</h1>\n"));
    CHECK_FALSE(files.count("new.txt"));
    CHECK(files.count("current"));
    CHECK(tree->uncommitted() == 3); // index.html, new.txt, current; not README, not more.log
    CHECK_FALSE(tree->dirty());
}

TEST_CASE("package_source --dirty: modified and untracked in, ignored and deleted out") {
    Repo repo;
    write(repo.app / "index.html", "<h1>changed</h1>\n");
    write(repo.app / "lib/new.txt", "new\n");
    write(repo.app / "more.log", "ignored\n");
    fs::remove(repo.app / "current");
    auto tree = package_source(repo.app, Mode::dirty);
    REQUIRE_MESSAGE(tree, (tree ? "" : tree.error().message));
    auto files = by_path(*tree);
    CHECK(files["index.html"].digest == common::sha256_hex("<h1>changed</h1>\n"));
    REQUIRE(files.count("lib/new.txt"));
    CHECK(files["lib/new.txt"].digest == common::sha256_hex("new\n"));
    CHECK_FALSE(files.count("more.log"));
    CHECK_FALSE(files.count("debug.log"));
    CHECK_FALSE(files.count("current"));
    CHECK(files["bin/start"].kind == EntryKind::executable);
    CHECK(tree->dirty());
    auto bytes = tree->read(files["index.html"].digest);
    REQUIRE(bytes);
    CHECK(*bytes == "<h1>changed</h1>\n");
}

TEST_CASE("package_source: a clean tree with --dirty is not dirty") {
    Repo repo;
    auto committed = package_source(repo.app, Mode::committed);
    auto dirty = package_source(repo.app, Mode::dirty);
    REQUIRE(committed);
    REQUIRE(dirty);
    CHECK_FALSE(dirty->dirty());
    CHECK(committed->manifest().digest() == dirty->manifest().digest());
}

TEST_CASE("package_source: no repository, no commits") {
    test::TempDir tmp;
    SUBCASE("not a git repository") {
        auto tree = package_source(tmp.path(), Mode::committed);
        REQUIRE_FALSE(tree);
        CHECK(common::exit_code(tree.error().kind) == 2);
        CHECK(tree.error().message.find("not in a git repository") != std::string::npos);
    }
    SUBCASE("no commits yet") {
        REQUIRE(git(tmp.path(), {"init", "-q"}));
        write(tmp.path() / "a.txt", "a");
        auto tree = package_source(tmp.path(), Mode::committed);
        REQUIRE_FALSE(tree);
        CHECK(common::exit_code(tree.error().kind) == 2);
        CHECK(tree.error().message.find("no commits yet") != std::string::npos);
    }
    SUBCASE("a subdirectory that was never committed") {
        Repo repo;
        write(repo.root / "other/x.txt", "x");
        auto tree = package_source(repo.root / "other", Mode::committed);
        REQUIRE_FALSE(tree);
        CHECK(tree.error().message.find("--dirty") != std::string::npos);
        auto dirty = package_source(repo.root / "other", Mode::dirty);
        REQUIRE(dirty);
        CHECK(dirty->manifest().entries.size() == 1);
    }
}
