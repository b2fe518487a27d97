#pragma once
// Real git repositories for tests: git run as a child process (no shell), files written.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace test {

// Runs git with argv (no shell) in `dir`; true when it exits 0.
inline bool git(const std::filesystem::path& dir, std::vector<std::string> args) {
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

inline void write(const std::filesystem::path& path, const std::string& content) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
}

} // namespace test
