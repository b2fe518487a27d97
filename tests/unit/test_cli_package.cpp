#include <cli/package/deployed_config.hpp>
#include <cli/package/git_tree.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sys/stat.h>
#include <vector>

#include "git_repo.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using cli::package::deployed_config;
using cli::package::describe_changes;
using cli::package::Mode;
using cli::package::package_source;
using common::EntryKind;
using test::git;
using test::write;

namespace {

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

// Removes the loose object of HEAD's `path` (relative to the repository's root).
void remove_git_copy(const Repo& repo, const std::string& path) {
    std::string oid(40, '\0');
    FILE* rev = ::popen(("git -C " + repo.root.string() + " rev-parse HEAD:" + path).c_str(), "r");
    REQUIRE(rev != nullptr);
    const auto got = std::fread(oid.data(), 1, oid.size(), rev);
    ::pclose(rev);
    REQUIRE(got == 40);
    REQUIRE(fs::remove(repo.root / ".git/objects" / oid.substr(0, 2) / oid.substr(2)));
}

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
    CHECK(tree->uncommitted().value() == 0);

    SUBCASE("read() returns a file's bytes by digest") {
        auto bytes = tree->read(files["bin/start"].digest);
        REQUIRE(bytes);
        CHECK(*bytes == "#!/bin/sh\nexec echo hi\n");
    }
}

TEST_CASE("package_source, Walk::at_load: the files are listed by load(), deploy.toml read "
          "before") {
    Repo repo;
    auto tree = package_source(repo.app, Mode::committed, cli::package::Walk::at_load);
    REQUIRE_MESSAGE(tree, (tree ? "" : tree.error().message));
    CHECK_FALSE(tree->loaded());
    CHECK(tree->manifest().entries.empty());
    CHECK_FALSE(tree->empty());
    CHECK(tree->commit().size() == 40);
    auto config = tree->read_path("deploy.toml");
    REQUIRE(config);
    REQUIRE(config->has_value());
    CHECK(**config == "app = \"hello\"\n");
    CHECK_FALSE(tree->loaded()); // read from git, not from a listing
    REQUIRE(tree->load());
    CHECK(tree->loaded());
    CHECK(tree->figures().files == 4);
    CHECK(by_path(*tree).count("bin/start"));
}

TEST_CASE("package_source: a tree with nothing in it is empty()") {
    Repo repo;
    REQUIRE(git(repo.root, {"rm", "-q", "-r", "app"}));
    fs::create_directories(repo.app);
    REQUIRE(git(repo.root, {"commit", "-q", "-m", "empty"}));
    auto root = package_source(repo.root, Mode::committed, cli::package::Walk::at_load);
    REQUIRE(root);
    CHECK_FALSE(root->empty()); // README, .gitignore
    REQUIRE(git(repo.root, {"rm", "-q", "README", ".gitignore"}));
    REQUIRE(git(repo.root, {"commit", "-q", "--allow-empty", "-m", "nothing"}));
    auto none = package_source(repo.root, Mode::committed, cli::package::Walk::at_load);
    REQUIRE(none);
    CHECK(none->empty());
    REQUIRE(none->load());
    CHECK(none->figures().files == 0);
}

TEST_CASE("package_source: a committed file is read from the working tree while it holds the "
          "same bytes") {
    Repo repo;
    auto tree = package_source(repo.app, Mode::committed);
    REQUIRE(tree);
    auto files = by_path(*tree);
    const auto index = files["index.html"];
    // git's copy of index.html removed: what read() returns now comes from the working tree.
    remove_git_copy(repo, "app/index.html");
    auto bytes = tree->read(index.digest, "index.html", index.size);
    REQUIRE_MESSAGE(bytes, (bytes ? "" : bytes.error().message));
    CHECK(*bytes == "<h1>hello</h1>\n");
    CHECK_FALSE(tree->read(index.digest)); // git's copy is gone: the check above can fail

    SUBCASE("a working copy changed since the commit is not sent: git's bytes are") {
        const auto start = files["bin/start"];
        write(repo.app / "bin/start", "#!/bin/sh\nexec echo bye\n"); // same size, other bytes
        auto read = tree->read(start.digest, "bin/start", start.size);
        REQUIRE(read);
        CHECK(*read == "#!/bin/sh\nexec echo hi\n");
        // Another size: not read at all. The bytes come from git, as before.
        write(repo.app / "bin/start", "changed\n");
        read = tree->read(start.digest, "bin/start", start.size);
        REQUIRE(read);
        CHECK(*read == "#!/bin/sh\nexec echo hi\n");
    }
    SUBCASE("a FIFO in the file's place is not waited on") {
        const auto start = files["bin/start"];
        fs::remove(repo.app / "bin/start");
        REQUIRE(::mkfifo((repo.app / "bin/start").c_str(), 0600) == 0);
        auto read = tree->read(start.digest, "bin/start", start.size);
        REQUIRE(read);
        CHECK(*read == "#!/bin/sh\nexec echo hi\n");
    }
}

TEST_CASE("package_source: a file no earlier deploy hashed is hashed from the working tree when "
          "it holds the committed bytes") {
    Repo repo;
    // git's copy of index.html removed before the first walk (no digest cache yet): the
    // walk can only have hashed it from the working tree.
    remove_git_copy(repo, "app/index.html");
    // bin/start changed since the commit, same size: git's bytes are what is hashed.
    write(repo.app / "bin/start", "#!/bin/sh\nexec echo by\n");
    const auto check = [](const cli::package::SourceTree& tree) {
        auto files = by_path(tree);
        CHECK(files["index.html"].digest == common::sha256_hex("<h1>hello</h1>\n"));
        CHECK(files["index.html"].size == 15);
        CHECK(files["bin/start"].digest == common::sha256_hex("#!/bin/sh\nexec echo hi\n"));
    };
    SUBCASE("walked at once") {
        auto tree = package_source(repo.app, Mode::committed);
        REQUIRE_MESSAGE(tree, (tree ? "" : tree.error().message));
        check(*tree);
    }
    SUBCASE("walked by load()") {
        auto tree = package_source(repo.app, Mode::committed, cli::package::Walk::at_load);
        REQUIRE_MESSAGE(tree, (tree ? "" : tree.error().message));
        REQUIRE(tree->load());
        check(*tree);
    }
    SUBCASE("a large file: read there only when git's header gives its size") {
        const std::string big(2 << 20, 'x'), other(3 << 20, 'y');
        write(repo.app / "big.bin", big);
        write(repo.app / "same.bin", big + "!");
        REQUIRE(git(repo.root, {"add", "-A"}));
        REQUIRE(git(repo.root, {"commit", "-q", "-m", "Large files"}));
        write(repo.app / "big.bin", other); // not read: git's blob is 2 MiB
        auto tree = package_source(repo.app, Mode::committed);
        REQUIRE_MESSAGE(tree, (tree ? "" : tree.error().message));
        auto files = by_path(*tree);
        CHECK(files["big.bin"].digest == common::sha256_hex(big));
        CHECK(files["same.bin"].digest == common::sha256_hex(big + "!"));
        CHECK(files["same.bin"].size == big.size() + 1);
    }
    SUBCASE("the working copy gone as well: git's read fails, and says so") {
        fs::remove(repo.app / "index.html");
        auto tree = package_source(repo.app, Mode::committed);
        REQUIRE_FALSE(tree);
        CHECK(tree.error().message.find("index.html") != std::string::npos);
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
    CHECK(tree->uncommitted().value() ==
          3); // index.html, new.txt, current; not README, not more.log
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

TEST_CASE(
    "deployed_config: the deploy.toml of the tree deployed, and how the working copy differs") {
    Repo repo;
    const std::string committed = "app = \"hello\"\n";
    auto deployed = [&](Mode mode) {
        auto tree = package_source(repo.app, mode);
        REQUIRE_MESSAGE(tree, (tree ? "" : tree.error().message));
        return deployed_config(repo.app, *tree);
    };

    SUBCASE("committed and unchanged: no warning, errors name the file") {
        auto config = deployed(Mode::committed);
        REQUIRE(config);
        CHECK(config->text == committed);
        CHECK_FALSE(config->warning);
        CHECK(config->source == (repo.app / "deploy.toml").string());
    }
    SUBCASE("modified: the committed one, the changed line named, and the fix") {
        write(repo.app / "deploy.toml", "app = \"other\"\n");
        auto config = deployed(Mode::committed);
        REQUIRE(config);
        CHECK(config->text == committed);
        REQUIRE(config->warning);
        CHECK(*config->warning ==
              (repo.app / "deploy.toml").string() +
                  " has uncommitted changes (line 1 is `app = \"other\"` (committed: `app = "
                  "\"hello\"`)); deploying the committed one (commit it, or deploy with --dirty)");
        CHECK(config->source == "HEAD:app/deploy.toml");
    }
    SUBCASE("modified, with --dirty: the working copy, no warning") {
        write(repo.app / "deploy.toml", "app = \"other\"\n");
        auto config = deployed(Mode::dirty);
        REQUIRE(config);
        CHECK(config->text == "app = \"other\"\n");
        CHECK_FALSE(config->warning);
    }
    SUBCASE("deleted: the committed one, and how to bring it back") {
        fs::remove(repo.app / "deploy.toml");
        auto config = deployed(Mode::committed);
        REQUIRE(config);
        CHECK(config->text == committed);
        REQUIRE(config->warning);
        CHECK(config->warning->find("is deleted in the working copy; deploying the committed one "
                                    "(git restore ") != std::string::npos);
    }
    SUBCASE("deleted, with --dirty: there is none to deploy") {
        fs::remove(repo.app / "deploy.toml");
        auto config = deployed(Mode::dirty);
        REQUIRE_FALSE(config);
        CHECK(config.error().message.find("no deploy.toml in") != std::string::npos);
    }
    SUBCASE("untracked: an error that says to commit it, or --dirty") {
        REQUIRE(git(repo.root, {"rm", "-q", "--cached", "app/deploy.toml"}));
        REQUIRE(git(repo.root, {"commit", "-q", "-m", "untrack"}));
        auto config = deployed(Mode::committed);
        REQUIRE_FALSE(config);
        CHECK(common::exit_code(config.error().kind) == 2);
        CHECK(config.error().message.find("deploy.toml is not committed") != std::string::npos);
        CHECK(config.error().message.find("git add " + (repo.app / "deploy.toml").string() +
                                          " && git commit") != std::string::npos);
        CHECK(config.error().message.find("--dirty") != std::string::npos);
        auto dirty = deployed(Mode::dirty);
        REQUIRE(dirty);
        CHECK(dirty->text == committed);
    }
    SUBCASE("ignored by .gitignore, with --dirty: an error that names .gitignore") {
        REQUIRE(git(repo.root, {"rm", "-q", "--cached", "app/deploy.toml"}));
        write(repo.root / ".gitignore", "*.log\n.env\ndeploy.toml\n");
        REQUIRE(git(repo.root, {"commit", "-q", "-am", "ignore it"}));
        auto config = deployed(Mode::dirty);
        REQUIRE_FALSE(config);
        CHECK(config.error().message.find("is ignored by git (.gitignore)") != std::string::npos);
    }
    SUBCASE("nowhere: the error of a folder without deploy.toml") {
        REQUIRE(git(repo.root, {"rm", "-q", "app/deploy.toml"}));
        REQUIRE(git(repo.root, {"commit", "-q", "-m", "no config"}));
        auto config = deployed(Mode::committed);
        REQUIRE_FALSE(config);
        CHECK(config.error().message.find("no deploy.toml in") != std::string::npos);
    }
}

TEST_CASE("describe_changes names the lines that differ, at most two") {
    CHECK(describe_changes("a\nb\n", "a\nb\n").empty());
    CHECK(describe_changes("a\nkeep = 5\nc\n", "a\nkeep = 3\nc\n") ==
          "line 2 is `keep = 3` (committed: `keep = 5`)");
    CHECK(describe_changes("a\nc\n", "a\nb\nc\n") == "line 2 added: `b`");
    CHECK(describe_changes("a\nb\nc\n", "a\nc\n") == "committed line 2 removed: `b`");
    CHECK(describe_changes("a\nb\n", "a\n\nb\n") == "line 2 added: (blank)");
    CHECK(describe_changes("1\n2\n3\n4\n", "x\n2\ny\n4\nz\n") ==
          "line 1 is `x` (committed: `1`); line 3 is `y` (committed: `3`); and 1 more line "
          "differs");
    CHECK(describe_changes("a\n", "  " + std::string(100, 'x') + "  \n") ==
          "line 1 is `" + std::string(60, 'x') + "…` (committed: `a`)");
}

TEST_CASE("package_source refuses a file name the agent cannot store, escaped, with the fix") {
    Repo repo;
    SUBCASE("committed: a newline in a name") {
        write(repo.app / "bad\nname.txt", "x");
        REQUIRE(git(repo.root, {"add", "-A"}));
        REQUIRE(git(repo.root, {"commit", "-q", "-m", "newline"}));
        auto tree = package_source(repo.app, Mode::committed);
        REQUIRE_FALSE(tree);
        CHECK(common::exit_code(tree.error().kind) == 2);
        const auto& message = tree.error().message;
        CHECK(message.find("\"bad\\nname.txt\"") != std::string::npos);
        CHECK(message.find("a newline (U+000A)") != std::string::npos);
        CHECK(message.find("git mv") != std::string::npos);
        CHECK(message.find(".gitignore") != std::string::npos);
        CHECK(message.find('\n') == std::string::npos);
    }
    SUBCASE("--dirty: an untracked file with a C1 character") {
        write(repo.app / "nel\xc2\x85", "x");
        auto tree = package_source(repo.app, Mode::dirty);
        REQUIRE_FALSE(tree);
        CHECK(common::exit_code(tree.error().kind) == 2);
        CHECK(tree.error().message.find("\"nel\\u0085\"") != std::string::npos);
    }
    SUBCASE("--dirty: a name that is not UTF-8") {
        write(repo.app / "latin1-caf\xe9", "x");
        auto tree = package_source(repo.app, Mode::dirty);
        REQUIRE_FALSE(tree);
        CHECK(tree.error().message.find("\"latin1-caf\\xe9\"") != std::string::npos);
        CHECK(tree.error().message.find("not valid UTF-8") != std::string::npos);
    }
    SUBCASE("non-ASCII UTF-8 names are deployed") {
        write(repo.app / "caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac.txt", "x");
        REQUIRE(git(repo.root, {"add", "-A"}));
        REQUIRE(git(repo.root, {"commit", "-q", "-m", "utf-8"}));
        auto tree = package_source(repo.app, Mode::committed);
        REQUIRE_MESSAGE(tree, (tree ? "" : tree.error().message));
        CHECK(by_path(*tree).count("caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac.txt"));
    }
}

TEST_CASE("package_source: a committed tree recorded by an earlier deploy waits for load()") {
    Repo repo;
    auto first = package_source(repo.app, Mode::committed);
    REQUIRE(first);
    CHECK(first->loaded());
    CHECK(first->known_root().empty()); // never deployed
    const auto figures = first->figures();
    CHECK(figures.files == 4);
    CHECK(figures.blobs == 3); // the symlink has no content of its own
    const std::string root(64, 'a');
    first->remember_root(root, figures);
    CHECK(first->known_root() == root);

    // The same git tree again: its record, no walk.
    auto again = package_source(repo.app, Mode::committed);
    REQUIRE(again);
    CHECK_FALSE(again->loaded());
    CHECK(again->known_root() == root);
    CHECK(again->manifest().entries.empty());
    const auto recorded = again->figures();
    CHECK(recorded.files == figures.files);
    CHECK(recorded.bytes == figures.bytes);
    CHECK(recorded.blobs == figures.blobs);
    CHECK(recorded.blob_bytes == figures.blob_bytes);
    // A regular file is read from git without the manifest; none is nullopt.
    auto toml = again->read_path("deploy.toml");
    REQUIRE(toml);
    CHECK(*toml == std::optional<std::string>("app = \"hello\"\n"));
    auto none = again->read_path("nothing.toml");
    REQUIRE(none);
    CHECK_FALSE(none->has_value());
    CHECK_FALSE(again->loaded());
    // A symlink is followed through the manifest: it is loaded for that.
    auto through_link = again->read_path("current");
    REQUIRE(through_link);
    CHECK(*through_link == std::optional<std::string>("#!/bin/sh\nexec echo hi\n"));
    CHECK(again->loaded());
    CHECK(again->manifest().digest() == first->manifest().digest());
    CHECK(again->figures().blob_bytes == figures.blob_bytes);
    REQUIRE(again->load());

    // load() walks it on demand, as packaging would have.
    auto lazy = package_source(repo.app, Mode::committed);
    REQUIRE(lazy);
    REQUIRE_FALSE(lazy->loaded());
    REQUIRE(lazy->load());
    CHECK(lazy->manifest().digest() == first->manifest().digest());
    auto start = lazy->read(by_path(*lazy).at("bin/start").digest);
    REQUIRE(start);
    CHECK(*start == "#!/bin/sh\nexec echo hi\n");

    // --dirty always walks; so does a changed tree (another git tree id).
    auto dirty = package_source(repo.app, Mode::dirty);
    REQUIRE(dirty);
    CHECK(dirty->loaded());
    write(repo.app / "index.html", "<h1>changed</h1>\n");
    REQUIRE(git(repo.root, {"commit", "-q", "-am", "Change"}));
    auto changed = package_source(repo.app, Mode::committed);
    REQUIRE(changed);
    CHECK(changed->loaded());
    CHECK(changed->known_root().empty());
}

TEST_CASE("package_source: a record in another format or garbled is not trusted") {
    Repo repo;
    auto first = package_source(repo.app, Mode::committed);
    REQUIRE(first);
    first->remember_root(std::string(64, 'b'), first->figures());
    const auto roots = repo.root / ".git/deployctl/roots";
    std::ifstream in(roots);
    std::string line;
    std::getline(in, line);
    in.close();
    REQUIRE(line.starts_with("2/"));
    const auto key_end = line.find(' ', line.find(' ') + 1) + 1; // "TAG TREE "
    const auto key = line.substr(0, key_end);
    for (const std::string& bad :
         {"1/" + line.substr(2, key_end - 2) + std::string(64, 'b'), // the old format
          key + std::string(64, 'b') + " 4 x 3 9",                   // a figure not a number
          key + std::string(63, 'b') + " 4 10 3 9",                  // a short root
          key + std::string(64, 'b') + " 4 10 3"}) {                 // a figure missing
        test::write(roots, bad + "\n");
        auto tree = package_source(repo.app, Mode::committed);
        REQUIRE(tree);
        CHECK_MESSAGE(tree->loaded(), bad);
        CHECK(tree->known_root().empty());
    }
}
