#include <agent/deploy/file_copy.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

void write(const fs::path& path, const std::string& text, mode_t mode) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << text;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

struct stat lstat_of(const fs::path& path) {
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st;
}

// Sets a time of its own on `path` (a symlink itself, not its target).
void set_time(const fs::path& path, long seconds) {
    const struct timespec times[2] = {{seconds, 0}, {seconds, 500}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

// A tree of every kind copy_tree handles, each with a mode and a time of its own.
fs::path make_tree(const fs::path& root) {
    const auto src = root / "src";
    write(src / "app.js", "console.log(1)\n", 0640);
    write(src / "bin" / "run", "#!/bin/sh\n", 0755);
    write(src / "lib" / "deep" / "one.js", std::string(100000, 'x'), 0600);
    write(src / "lib" / "pair-a", "linked\n", 0644);
    REQUIRE(::link((src / "lib" / "pair-a").c_str(), (src / "lib" / "pair-b").c_str()) == 0);
    fs::create_symlink("../app.js", src / "lib" / "to-app");
    fs::create_symlink("nowhere", src / "dangling");
    REQUIRE(::mkfifo((src / "pipe").c_str(), 0620) == 0);
    fs::create_directories(src / "empty");
    REQUIRE(::chmod((src / "empty").c_str(), 0750) == 0);
    REQUIRE(::chmod((src / "lib").c_str(), 0711) == 0);
    long t = 1700000000;
    for (const char* path : {"app.js", "bin/run", "lib/deep/one.js", "lib/pair-a", "lib/to-app",
                             "dangling", "pipe", "empty", "lib/deep", "lib", "bin"})
        set_time(src / path, t += 100);
    set_time(src, t + 100);
    return src;
}

void check_same_entry(const fs::path& from, const fs::path& to, bool same_inode) {
    const auto a = lstat_of(from);
    const auto b = lstat_of(to);
    INFO(to.string());
    CHECK((a.st_mode & S_IFMT) == (b.st_mode & S_IFMT));
    CHECK((a.st_mode & 07777) == (b.st_mode & 07777));
    if (!S_ISLNK(a.st_mode) || same_inode) { // a symlink's own time: where lutimes works
        CHECK(a.st_mtim.tv_sec == b.st_mtim.tv_sec);
        CHECK(a.st_mtim.tv_nsec == b.st_mtim.tv_nsec);
    }
    if (S_ISREG(a.st_mode)) {
        CHECK(read(from) == read(to));
        CHECK((a.st_ino == b.st_ino) == same_inode);
    }
    if (S_ISLNK(a.st_mode))
        CHECK(fs::read_symlink(from) == fs::read_symlink(to));
}

} // namespace

TEST_CASE("copy_tree copies every kind of entry with its mode and time, sharing no file") {
    test::TempDir dir;
    const auto src = make_tree(dir.path());
    const auto dst = dir.path() / "dst";
    std::uint64_t bytes = 1;
    REQUIRE(agent::copy_tree(src, dst, false, &bytes));
    // The regular files' sizes, the two links of pair-a once.
    CHECK(bytes == std::string("console.log(1)\n").size() + std::string("#!/bin/sh\n").size() +
                       100000 + std::string("linked\n").size());
    for (const char* path : {"app.js", "bin/run", "lib/deep/one.js", "lib/pair-a", "lib/pair-b",
                             "lib/to-app", "dangling", "pipe", "empty", "lib/deep", "lib", "bin"})
        check_same_entry(src / path, dst / path, false);
    check_same_entry(src, dst, false);
    // Two links of one file in the tree stay one file in the copy.
    CHECK(lstat_of(dst / "lib" / "pair-a").st_ino == lstat_of(dst / "lib" / "pair-b").st_ino);
    // A write to the copy leaves the source as it was.
    std::ofstream(dst / "app.js", std::ios::app) << "changed";
    CHECK(read(src / "app.js") == "console.log(1)\n");
}

TEST_CASE("copy_tree with links: the files are the source's, the folders new") {
    test::TempDir dir;
    const auto src = make_tree(dir.path());
    const auto dst = dir.path() / "links";
    REQUIRE(agent::copy_tree(src, dst, true));
    for (const char* path : {"app.js", "bin/run", "lib/deep/one.js", "lib/pair-a", "lib/pair-b"})
        check_same_entry(src / path, dst / path, true);
    for (const char* path : {"lib", "lib/deep", "empty"})
        check_same_entry(src / path, dst / path, false);
    CHECK(fs::read_symlink(dst / "dangling") == "nowhere");
}

TEST_CASE("copy_tree: one file, a target that exists, and a failure leaves nothing") {
    test::TempDir dir;
    write(dir.path() / "one", "1", 0604);
    std::uint64_t bytes = 0;
    REQUIRE(agent::copy_tree(dir.path() / "one", dir.path() / "copy", false, &bytes));
    CHECK(read(dir.path() / "copy") == "1");
    CHECK((lstat_of(dir.path() / "copy").st_mode & 07777) == 0604);
    CHECK(bytes == 1);
    // A lone symlink or FIFO is made again with its mode and time, as inside a tree.
    fs::create_symlink("one", dir.path() / "lone-link");
    REQUIRE(::mkfifo((dir.path() / "lone-pipe").c_str(), 0620) == 0);
    set_time(dir.path() / "lone-pipe", 1700000000);
    REQUIRE(agent::copy_tree(dir.path() / "lone-link", dir.path() / "link-copy", false));
    REQUIRE(agent::copy_tree(dir.path() / "lone-pipe", dir.path() / "pipe-copy", false));
    check_same_entry(dir.path() / "lone-link", dir.path() / "link-copy", false);
    check_same_entry(dir.path() / "lone-pipe", dir.path() / "pipe-copy", false);

    fs::create_directories(dir.path() / "taken");
    write(dir.path() / "taken" / "keep", "k", 0644);
    auto refused = agent::copy_tree(dir.path() / "one", dir.path() / "taken", false);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message.find("it exists") != std::string::npos);
    CHECK(read(dir.path() / "taken" / "keep") == "k");

    if (::geteuid() == 0) { // a device file is refused, and the half-made copy removed
        write(dir.path() / "tree" / "a" / "file", "a", 0644);
        REQUIRE(::mknod((dir.path() / "tree" / "a" / "null").c_str(), S_IFCHR | 0600,
                        makedev(1, 3)) == 0);
        auto failed = agent::copy_tree(dir.path() / "tree", dir.path() / "out", false);
        REQUIRE_FALSE(failed);
        CHECK(failed.error().message.find("device file") != std::string::npos);
        CHECK_FALSE(fs::exists(dir.path() / "out"));
    }
}

TEST_CASE("LinkedOnce: a file with several names counts at its first, one with one name always") {
    test::TempDir dir;
    write(dir.path() / "a", "a", 0644);
    write(dir.path() / "single", "s", 0644);
    fs::create_hard_link(dir.path() / "a", dir.path() / "b");
    agent::LinkedOnce once;
    CHECK(once.first(lstat_of(dir.path() / "a")));
    CHECK_FALSE(once.first(lstat_of(dir.path() / "b")));
    CHECK_FALSE(once.first(lstat_of(dir.path() / "a")));
    // One link: its inode is not kept, so every sighting counts (a walk meets it once).
    CHECK(once.first(lstat_of(dir.path() / "single")));
    CHECK(once.first(lstat_of(dir.path() / "single")));
}

TEST_CASE(
    "copy_snapshot with links: the files the walk saw, not those added or put in place since") {
    test::TempDir tmp;
    const auto from = tmp.path() / "release";
    write(from / "node_modules/a/index.js", "a", 0644);
    write(from / "node_modules/b/index.js", "b", 0644);
    write(from / "server.js", "app", 0644);
    auto tree = agent::snapshot_tree(from);
    REQUIRE(tree.ok());
    auto part = agent::subtree(*tree, "node_modules");
    REQUIRE(part.has_value());
    CHECK(part->root == from / "node_modules");
    CHECK(part->entries.size() == 4); // a, a/index.js, b, b/index.js
    CHECK_FALSE(agent::subtree(*tree, "vendor").has_value());
    CHECK(agent::subtree(*tree, "server.js")->entries.empty());

    // Added after the walk: left out. Changed in place: linked as it is (the same file).
    write(from / "node_modules/c/index.js", "c", 0644);
    std::ofstream(from / "node_modules/a/index.js", std::ios::app) << " changed";
    REQUIRE(agent::copy_snapshot(*part, tmp.path() / "kept", true).ok());
    CHECK(read(tmp.path() / "kept/a/index.js") == "a changed");
    CHECK(lstat_of(tmp.path() / "kept/a/index.js").st_ino ==
          lstat_of(from / "node_modules/a/index.js").st_ino);
    CHECK_FALSE(fs::exists(tmp.path() / "kept/c"));

    // Put in the place of a file the walk saw: the links fail, and nothing is left.
    write(from / "node_modules/b/index.js.new", "b2", 0644);
    fs::rename(from / "node_modules/b/index.js.new", from / "node_modules/b/index.js");
    auto linked = agent::copy_snapshot(*part, tmp.path() / "kept2", true);
    REQUIRE_FALSE(linked.ok());
    CHECK(linked.error().message.find("was replaced since it was listed") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp.path() / "kept2"));
}

TEST_CASE("copy_file: a blob's size ends the copy; a file system without reflinks is asked once") {
    test::TempDir tmp;
    const std::string content(300000, 'x');
    write(tmp.path() / "blob", content, 0444);
    agent::CopyMemo memo;
    // The size given: copied whole, with the mode asked for whatever the umask.
    REQUIRE(agent::copy_file(tmp.path() / "blob", tmp.path() / "a", 0755, nullptr, content.size(),
                             &memo)
                .ok());
    CHECK(read(tmp.path() / "a") == content);
    CHECK((lstat_of(tmp.path() / "a").st_mode & 07777) == 0755);
    CHECK(lstat_of(tmp.path() / "a").st_ino != lstat_of(tmp.path() / "blob").st_ino);
    // Once a reflink was refused (or here, marked so), the next copies are made all the same.
    memo.no_reflink = true;
    REQUIRE(agent::copy_file(tmp.path() / "blob", tmp.path() / "b", 0644, nullptr, content.size(),
                             &memo)
                .ok());
    CHECK(read(tmp.path() / "b") == content);
    // A size of 0 or none: read to the end.
    REQUIRE(agent::copy_file(tmp.path() / "blob", tmp.path() / "c", 0644, nullptr, 0, &memo).ok());
    CHECK(read(tmp.path() / "c") == content);
    REQUIRE(agent::copy_file(tmp.path() / "blob", tmp.path() / "d", 0644).ok());
    CHECK(read(tmp.path() / "d") == content);
    write(tmp.path() / "empty", "", 0444);
    REQUIRE(agent::copy_file(tmp.path() / "empty", tmp.path() / "e", 0644, nullptr, 0, &memo).ok());
    CHECK(fs::file_size(tmp.path() / "e") == 0);
}
