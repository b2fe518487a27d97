#include <agent/deploy/build_cache.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <thread>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using agent::BuildCache;
using agent::BuildCacheEntry;

namespace {

void write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << text;
}

std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

ino_t inode(const fs::path& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_ino;
}

std::vector<std::string> notes_of(const std::function<void(BuildCache::Note)>& step) {
    std::vector<std::string> notes;
    step([&](std::string_view note) { notes.emplace_back(note); });
    return notes;
}

bool has_note(const std::vector<std::string>& notes, const std::string& part) {
    for (const auto& note : notes)
        if (note.find(part) != std::string::npos)
            return true;
    return false;
}

const BuildCacheEntry* find(const std::vector<BuildCacheEntry>& entries, const std::string& name) {
    for (const auto& entry : entries)
        if (entry.name == name)
            return &entry;
    return nullptr;
}

// A build in `release`: restore, what `build` does there and in $CACHE_DIR, then save.
void build(const BuildCache& cache, const fs::path& release, const std::vector<std::string>& paths,
           const std::function<void()>& step, std::uint64_t max = 1ULL << 30) {
    fs::create_directories(release);
    auto held = cache.lock(true);
    REQUIRE(held.ok());
    REQUIRE(cache.restore(release, paths, false, [](std::string_view) {}).ok());
    step();
    REQUIRE(cache.save(release, paths, max, [](std::string_view) {}).ok());
}

} // namespace

TEST_CASE("build cache: a saved path is restored into the next build as a copy of its own") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    const std::vector<std::string> paths{"node_modules", "vendor/bundle"};
    build(cache, tmp.path() / "v1", paths, [&] {
        write(tmp.path() / "v1/node_modules/left-pad/index.js", "pad");
        write(tmp.path() / "v1/vendor/bundle/gem.rb", "gem");
        write(cache.build_dir() / "npm/index", "npm's own cache");
    });
    CHECK(read(tmp.path() / "cache/paths/node_modules/left-pad/index.js") == "pad");
    CHECK(read(tmp.path() / "cache/paths/vendor%2Fbundle/gem.rb") == "gem");
    CHECK(read(tmp.path() / "cache/dir/npm/index") == "npm's own cache");
    CHECK_FALSE(fs::exists(cache.build_dir())); // it became dir/

    fs::create_directories(tmp.path() / "v2");
    auto held = cache.lock(true);
    REQUIRE(held.ok());
    auto notes = notes_of([&](BuildCache::Note note) {
        REQUIRE(cache.restore(tmp.path() / "v2", paths, false, note).ok());
    });
    CHECK(has_note(notes, "build cache: restored node_modules ("));
    CHECK(has_note(notes, "vendor/bundle ("));
    CHECK(read(tmp.path() / "v2/node_modules/left-pad/index.js") == "pad");
    CHECK(read(cache.build_dir() / "npm/index") == "npm's own cache");
    // Copies: a write in the new build reaches neither the old release nor the cache.
    CHECK(inode(tmp.path() / "v2/node_modules/left-pad/index.js") !=
          inode(tmp.path() / "v1/node_modules/left-pad/index.js"));
    CHECK(inode(tmp.path() / "v2/node_modules/left-pad/index.js") !=
          inode(tmp.path() / "cache/paths/node_modules/left-pad/index.js"));
    CHECK(inode(cache.build_dir() / "npm/index") != inode(tmp.path() / "cache/dir/npm/index"));
}

TEST_CASE("build cache: a failed build leaves the cache as it was") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    build(cache, tmp.path() / "v1", {"node_modules"}, [&] {
        write(tmp.path() / "v1/node_modules/a.js", "good");
        write(cache.build_dir() / "kept", "good");
    });
    fs::create_directories(tmp.path() / "v2");
    {
        auto held = cache.lock(true);
        REQUIRE(held.ok());
        REQUIRE(cache.restore(tmp.path() / "v2", {"node_modules"}, false, [](std::string_view) {})
                    .ok());
        write(tmp.path() / "v2/node_modules/a.js", "half-written");
        write(cache.build_dir() / "kept", "half-written");
        write(cache.build_dir() / "poison", "x");
        cache.discard(); // the build failed
    }
    CHECK(read(tmp.path() / "cache/paths/node_modules/a.js") == "good");
    CHECK(read(tmp.path() / "cache/dir/kept") == "good");
    CHECK_FALSE(fs::exists(tmp.path() / "cache/dir/poison"));
    CHECK_FALSE(fs::exists(cache.build_dir()));
}

TEST_CASE("build cache: --no-cache restores nothing; a path in the tree is not replaced") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    build(cache, tmp.path() / "v1", {"node_modules"}, [&] {
        write(tmp.path() / "v1/node_modules/a.js", "cached");
        write(cache.build_dir() / "x", "cached");
    });
    auto held = cache.lock(true);
    REQUIRE(held.ok());
    fs::create_directories(tmp.path() / "v2");
    auto notes = notes_of([&](BuildCache::Note note) {
        REQUIRE(cache.restore(tmp.path() / "v2", {"node_modules"}, true, note).ok());
    });
    CHECK(has_note(notes, "--no-cache"));
    CHECK_FALSE(fs::exists(tmp.path() / "v2/node_modules"));
    CHECK(fs::is_empty(cache.build_dir()));

    write(tmp.path() / "v3/node_modules/a.js", "committed");
    notes = notes_of([&](BuildCache::Note note) {
        REQUIRE(cache.restore(tmp.path() / "v3", {"node_modules"}, false, note).ok());
    });
    CHECK(has_note(notes, "node_modules is in the uploaded tree"));
    CHECK(read(tmp.path() / "v3/node_modules/a.js") == "committed");
}

TEST_CASE("build cache: one build at a time") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    auto first = cache.lock(false);
    REQUIRE(first.ok());
    auto second = cache.lock(false);
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().kind == common::ErrorKind::refused);
    CHECK(second.error().message.find("a build of the app is using its build cache") !=
          std::string::npos);
    first = agent::BuildCacheLock(); // released
    CHECK(cache.lock(false).ok());
}

TEST_CASE("build cache: bounded by cache_max, least recently used dropped first") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    const std::string kib100(100 * 1024, 'x');
    for (int run = 1; run <= 4; ++run) {
        std::vector<std::string> notes;
        fs::create_directories(tmp.path() / ("v" + std::to_string(run)));
        auto held = cache.lock(true);
        REQUIRE(held.ok());
        REQUIRE(cache
                    .restore(tmp.path() / ("v" + std::to_string(run)), {}, false,
                             [](std::string_view) {})
                    .ok());
        write(cache.build_dir() / ("run-" + std::to_string(run)) / "blob", kib100);
        REQUIRE(cache
                    .save(tmp.path() / ("v" + std::to_string(run)), {}, 250 * 1024,
                          [&](std::string_view note) { notes.emplace_back(note); })
                    .ok());
        if (run == 3)
            CHECK(has_note(notes, "build cache: dropped run-1 (100.0 KiB), the least recently "
                                  "used, to stay within [build] cache_max"));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    auto entries = cache.entries();
    CHECK(find(entries, "run-1") == nullptr);
    CHECK(find(entries, "run-2") == nullptr);
    REQUIRE(find(entries, "run-3") != nullptr);
    REQUIRE(find(entries, "run-4") != nullptr);
    CHECK(find(entries, "run-4")->kind == "dir");
    CHECK(find(entries, "run-4")->bytes == kib100.size());
    // An entry larger than the whole bound is not kept either.
    CHECK(cache.bound(50 * 1024).size() == 2);
    CHECK(cache.entries().empty());
}

TEST_CASE("build cache: a kept build is reused as a copy, and dropped with its releases") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    write(tmp.path() / "v1/public/index.html", "built");
    const std::string key(64, 'a');
    REQUIRE(cache.keep_build(tmp.path() / "v1", key, "v1").ok());
    CHECK(cache.has_build(key));
    CHECK_FALSE(cache.has_build(std::string(64, 'b')));
    CHECK_FALSE(cache.has_build(""));
    REQUIRE(cache.reuse_build(key, tmp.path() / "v2").ok());
    CHECK(read(tmp.path() / "v2/public/index.html") == "built");
    CHECK(inode(tmp.path() / "v2/public/index.html") != inode(tmp.path() / "v1/public/index.html"));
    auto entries = cache.entries();
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].kind == "build");
    CHECK(entries[0].release == "v1");
    CHECK(entries[0].bytes == 5);
    cache.drop_builds_except({std::string(64, 'b')});
    CHECK_FALSE(cache.has_build(key));
    CHECK(cache.entries().empty());
}

TEST_CASE("build cache: clear removes everything and says how much") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    build(cache, tmp.path() / "v1", {"node_modules"}, [&] {
        write(tmp.path() / "v1/node_modules/a.js", "12345");
        write(cache.build_dir() / "x", "123");
    });
    REQUIRE(cache.keep_build(tmp.path() / "v1", std::string(64, 'c'), "v1").ok());
    CHECK(cache.clear() == 5 + 3 + 5); // node_modules, $CACHE_DIR, the kept build of the tree
    CHECK(cache.entries().empty());
}

TEST_CASE("build cache: path names escape '/' and '%'") {
    CHECK(agent::cache_path_name("node_modules") == "node_modules");
    CHECK(agent::cache_path_name("vendor/bundle") == "vendor%2Fbundle");
    CHECK(agent::cache_path_name("a%2Fb") == "a%252Fb");
}

TEST_CASE("build cache: never followed out of the release through a symbolic link") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    const auto outside = tmp.path() / "outside";
    fs::create_directories(outside);
    build(cache, tmp.path() / "v1", {"vendor/bundle"},
          [&] { write(tmp.path() / "v1/vendor/bundle/gem.rb", "gem"); });
    // A tree whose vendor/ points elsewhere: nothing is written there.
    fs::create_directories(tmp.path() / "v2");
    fs::create_directory_symlink(outside, tmp.path() / "v2/vendor");
    auto held = cache.lock(true);
    REQUIRE(held.ok());
    auto notes = notes_of([&](BuildCache::Note note) {
        REQUIRE(cache.restore(tmp.path() / "v2", {"vendor/bundle"}, false, note).ok());
    });
    CHECK(has_note(notes, "vendor/bundle not restored: vendor is a symbolic link"));
    CHECK(fs::is_empty(outside));
    // And a build that leaves such a link: what it points to is not saved.
    write(outside / "bundle/secret", "not the app's");
    notes = notes_of([&](BuildCache::Note note) {
        REQUIRE(cache.save(tmp.path() / "v2", {"vendor/bundle"}, 1ULL << 30, note).ok());
    });
    CHECK(has_note(notes, "vendor/bundle not saved: vendor is a symbolic link"));
    CHECK(read(tmp.path() / "cache/paths/vendor%2Fbundle/gem.rb") == "gem");
    CHECK_FALSE(fs::exists(tmp.path() / "cache/paths/vendor%2Fbundle/secret"));
}

namespace {
common::Status any_room(std::uint64_t, std::uint64_t) {
    return {};
}
} // namespace

TEST_CASE("build cache: a copy made ahead is renamed into the next build, not copied again") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    const std::vector<std::string> paths{"node_modules"};
    build(cache, tmp.path() / "v1", paths, [&] {
        write(tmp.path() / "v1/node_modules/left-pad/index.js", "pad");
        write(cache.build_dir() / "npm/index", "npm's own cache");
    });
    auto made = cache.prepare(1ULL << 30, any_room, nullptr);
    REQUIRE(made.ok());
    CHECK(*made == 3 + 15);
    const auto ready = tmp.path() / "cache/next/paths/node_modules/left-pad/index.js";
    REQUIRE(fs::exists(ready));
    const auto ready_inode = inode(ready);
    const auto ready_npm = inode(tmp.path() / "cache/next/dir/npm/index");
    // Listed, and counted, as what it is.
    const auto listed = cache.entries();
    const auto* entry = find(listed, "next build");
    REQUIRE(entry != nullptr);
    CHECK(entry->kind == "ready");
    CHECK(entry->bytes >= 3 + 15);
    // Made already: not made again.
    CHECK(*cache.prepare(1ULL << 30, any_room, nullptr) == 0);
    CHECK(inode(ready) == ready_inode);

    fs::create_directories(tmp.path() / "v2");
    auto held = cache.lock(true);
    REQUIRE(held.ok());
    auto notes = notes_of([&](BuildCache::Note note) {
        REQUIRE(cache.restore(tmp.path() / "v2", paths, false, note).ok());
    });
    CHECK(has_note(notes, "build cache: restored node_modules (3 B)"));
    CHECK(has_note(notes, "($CACHE_DIR, node_modules: the copy made ahead of this build)"));
    // The copy's own files, moved: not the cache's, not the old release's.
    CHECK(inode(tmp.path() / "v2/node_modules/left-pad/index.js") == ready_inode);
    CHECK(inode(cache.build_dir() / "npm/index") == ready_npm);
    CHECK(ready_inode != inode(tmp.path() / "cache/paths/node_modules/left-pad/index.js"));
    CHECK(ready_inode != inode(tmp.path() / "v1/node_modules/left-pad/index.js"));
    CHECK(ready_npm != inode(tmp.path() / "cache/dir/npm/index"));
    CHECK(read(tmp.path() / "v2/node_modules/left-pad/index.js") == "pad");
    CHECK_FALSE(fs::exists(tmp.path() / "cache/next")); // used once
    CHECK(find(cache.entries(), "next build") == nullptr);
}

TEST_CASE("build cache: a kept build's copy made ahead is renamed into its reuse, once") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    write(tmp.path() / "v1/public/index.html", "built");
    const std::string key(64, 'a');
    REQUIRE(cache.keep_build(tmp.path() / "v1", key, "v1").ok());
    SUBCASE("none when the disk guard refuses it") {
        auto refused = cache.prepare_build(
            key,
            [](std::uint64_t, std::uint64_t) {
                return common::Status(common::make_error(common::ErrorKind::disk_full, "full"));
            },
            nullptr);
        REQUIRE_FALSE(refused.ok());
        CHECK(refused.error().message == "full");
        bool ahead = true;
        REQUIRE(cache.reuse_build(key, tmp.path() / "v2", &ahead).ok());
        CHECK_FALSE(ahead);
        CHECK(read(tmp.path() / "v2/public/index.html") == "built");
    }
    auto made = cache.prepare_build(key, any_room, nullptr);
    REQUIRE_MESSAGE(made.ok(), (made ? "" : made.error().message));
    CHECK(*made == 5);
    CHECK(*cache.prepare_build(std::string(64, 'b'), any_room, nullptr) == 0); // not kept
    const auto ready = tmp.path() / "cache/builds" / (".ready-" + key) / "public/index.html";
    REQUIRE(fs::exists(ready));
    const auto ready_inode = inode(ready);
    CHECK(*cache.prepare_build(key, any_room, nullptr) == 0); // made already
    CHECK(inode(ready) == ready_inode);
    // Listed as a copy of that build, counted apart from it.
    const auto listed = cache.entries();
    REQUIRE(listed.size() == 2);
    CHECK(listed[0].kind == "build");
    CHECK(listed[1].kind == "ready");
    CHECK(listed[1].name == key);
    CHECK(listed[1].release == "v1");
    CHECK(listed[1].bytes == 5);

    SUBCASE("reused: the copy itself, moved; the next reuse copies") {
        bool ahead = false;
        REQUIRE(cache.reuse_build(key, tmp.path() / "v2", &ahead).ok());
        CHECK(ahead);
        CHECK(inode(tmp.path() / "v2/public/index.html") == ready_inode);
        CHECK(ready_inode != inode(tmp.path() / "cache/builds" / key / "public/index.html"));
        CHECK(ready_inode != inode(tmp.path() / "v1/public/index.html"));
        CHECK(read(tmp.path() / "v2/public/index.html") == "built");
        CHECK(cache.entries().size() == 1);
        REQUIRE(cache.reuse_build(key, tmp.path() / "v3", &ahead).ok());
        CHECK_FALSE(ahead);
        CHECK(read(tmp.path() / "v3/public/index.html") == "built");
        CHECK(inode(tmp.path() / "v3/public/index.html") != ready_inode);
    }
    SUBCASE("one another agent process made is not trusted: it is made again") {
        write(tmp.path() / "cache/builds" / (".ready-" + key + ".made"), "another process\n");
        bool ahead = true;
        REQUIRE(cache.reuse_build(key, tmp.path() / "v2", &ahead).ok());
        CHECK_FALSE(ahead);
        CHECK(inode(tmp.path() / "v2/public/index.html") != ready_inode);
        CHECK(*cache.prepare_build(key, any_room, nullptr) == 5);
    }
    SUBCASE("one per app: a copy of another build replaces it") {
        write(tmp.path() / "v2/public/index.html", "built again");
        const std::string other(64, 'c');
        REQUIRE(cache.keep_build(tmp.path() / "v2", other, "v2").ok());
        CHECK(*cache.prepare_build(other, any_room, nullptr) == 11);
        CHECK_FALSE(fs::exists(tmp.path() / "cache/builds" / (".ready-" + key)));
        CHECK_FALSE(fs::exists(tmp.path() / "cache/builds" / (".ready-" + key + ".made")));
        const auto now = cache.entries();
        REQUIRE(now.size() == 3);
        CHECK(now[2].kind == "ready");
        CHECK(now[2].release == "v2");
    }
    SUBCASE("dropped with its build") {
        cache.drop_builds_except({std::string(64, 'b')});
        CHECK(cache.entries().empty());
        CHECK(fs::is_empty(tmp.path() / "cache/builds"));
    }
    SUBCASE("cancelled: none made") {
        std::atomic<bool> cancel{true};
        bool ahead = false;
        REQUIRE(cache.reuse_build(key, tmp.path() / "v2", &ahead).ok()); // uses the one made
        CHECK(ahead);
        CHECK_FALSE(cache.prepare_build(key, any_room, &cancel).ok());
        CHECK_FALSE(fs::exists(tmp.path() / "cache/builds" / (".ready-" + key)));
    }
}

TEST_CASE("build cache: a copy made ahead is never used once the cache changed") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    const std::vector<std::string> paths{"node_modules"};
    build(cache, tmp.path() / "v1", paths,
          [&] { write(tmp.path() / "v1/node_modules/a.js", "1"); });
    REQUIRE(cache.prepare(1ULL << 30, any_room, nullptr).ok());
    REQUIRE(fs::exists(tmp.path() / "cache/next"));

    SUBCASE("a save makes it stale") {
        build(cache, tmp.path() / "v2", paths,
              [&] { write(tmp.path() / "v2/node_modules/a.js", "2"); });
        CHECK_FALSE(fs::exists(tmp.path() / "cache/next/made"));
        fs::create_directories(tmp.path() / "v3");
        auto held = cache.lock(true);
        auto notes = notes_of([&](BuildCache::Note note) {
            REQUIRE(cache.restore(tmp.path() / "v3", paths, false, note).ok());
        });
        CHECK(read(tmp.path() / "v3/node_modules/a.js") == "2");
        CHECK_FALSE(has_note(notes, "made ahead"));
    }
    SUBCASE("a save or a clear while it is being made: it is dropped") {
        build(cache, tmp.path() / "v2", paths,
              [&] { write(tmp.path() / "v2/node_modules/a.js", "2"); });
        write(tmp.path() / "v3/node_modules/a.js", "3");
        auto made = cache.prepare(
            1ULL << 30,
            [&](std::uint64_t, std::uint64_t) {
                return cache.save(tmp.path() / "v3", paths, 1ULL << 30, [](std::string_view) {});
            },
            nullptr);
        REQUIRE_FALSE(made.ok());
        CHECK(made.error().message == "the cache changed while it was copied");
        CHECK_FALSE(fs::exists(tmp.path() / "cache/next"));
        CHECK_FALSE(fs::exists(tmp.path() / "cache/.next-tmp"));
        made = cache.prepare(
            1ULL << 30,
            [&](std::uint64_t, std::uint64_t) {
                cache.clear();
                return common::Status();
            },
            nullptr);
        CHECK_FALSE(made.ok());
        CHECK_FALSE(fs::exists(tmp.path() / "cache/next"));
        CHECK_FALSE(fs::exists(tmp.path() / "cache/.next-tmp"));
        made = cache.prepare(1ULL << 30, any_room, nullptr);
        CHECK((made.ok() && *made == 0)); // nothing left to copy
    }
    SUBCASE("made by another agent process (a restart): not trusted") {
        write(tmp.path() / "cache/next/made",
              "another process\n" + read(tmp.path() / "cache/version"));
        write(tmp.path() / "cache/next/paths/node_modules/a.js", "stale");
        fs::create_directories(tmp.path() / "v2");
        auto held = cache.lock(true);
        REQUIRE(cache.restore(tmp.path() / "v2", paths, false, [](std::string_view) {}).ok());
        CHECK(read(tmp.path() / "v2/node_modules/a.js") == "1");
    }
}

TEST_CASE("build cache: a copy made ahead fits in cache_max and the disk, or is not made") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    build(cache, tmp.path() / "v1", {"node_modules"},
          [&] { write(tmp.path() / "v1/node_modules/a.js", std::string(600, 'x')); });
    auto made = cache.prepare(1000, any_room, nullptr); // 600 B and its copy: over 1,000
    REQUIRE_FALSE(made.ok());
    CHECK(made.error().message.find("would take more than [build] cache_max") != std::string::npos);
    made = cache.prepare(
        1ULL << 30,
        [](std::uint64_t bytes, std::uint64_t files) -> common::Status {
            CHECK(bytes == 600);
            CHECK(files == 3); // node_modules, a.js and $CACHE_DIR
            return common::make_error(common::ErrorKind::disk_full, "full");
        },
        nullptr);
    REQUIRE_FALSE(made.ok());
    CHECK(made.error().kind == common::ErrorKind::disk_full);
    // Cancelled: no copy, and what it had copied is left to the next one to remove (not
    // removed on the way of the build that cancelled it).
    std::atomic<bool> cancel{true};
    made = cache.prepare(1ULL << 30, any_room, &cancel);
    CHECK_FALSE(made.ok());
    CHECK_FALSE(fs::exists(tmp.path() / "cache/next"));
    CHECK(fs::exists(tmp.path() / "cache/.next-tmp"));
    made = cache.prepare(1ULL << 30, any_room, nullptr);
    REQUIRE(made.ok());
    CHECK(*made == 600);
    CHECK(read(tmp.path() / "cache/next/paths/node_modules/a.js") == std::string(600, 'x'));
    CHECK_FALSE(fs::exists(tmp.path() / "cache/.next-tmp"));
}

TEST_CASE("build cache: nothing is copied ahead of a cache of empty folders") {
    test::TempDir tmp;
    BuildCache cache(tmp.path() / "cache");
    build(cache, tmp.path() / "v1", {}, [&] { fs::create_directories(cache.build_dir() / "npm"); });
    auto made = cache.prepare(1ULL << 30, any_room, nullptr);
    REQUIRE(made.ok());
    CHECK(*made == 0);
    CHECK_FALSE(fs::exists(tmp.path() / "cache/next"));
}
