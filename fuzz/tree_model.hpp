#pragma once
// What a materialized release tree looks like to the kernel, without writing it:
// the entries of a manifest as files, symlinks and the directories they imply.
// resolve() follows a symlink target component by component the way path
// resolution does (symlinks followed, ".." after a symlink applies to where it
// led), and reports whether it ever climbs above the release directory.

#include <common/manifest.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace fuzz {

class TreeModel {
  public:
    explicit TreeModel(const common::Manifest& manifest) {
        for (const auto& e : manifest.entries) {
            (e.kind == common::EntryKind::symlink ? m_symlinks[e.path] : m_files[e.path]) =
                e.target;
            for (auto slash = e.path.find('/'); slash != std::string::npos;
                 slash = e.path.find('/', slash + 1))
                m_dirs.insert(e.path.substr(0, slash));
        }
    }

    // False when resolving the symlink at `link` escapes the tree. Resolution
    // that fails the way the kernel's would (ENOENT, ENOTDIR, ELOOP) is not an escape.
    bool symlink_stays_inside(const std::string& link) const {
        int hops = 0;
        std::vector<std::string> at = parent_of(link);
        return follow(at, m_symlinks.at(link), hops) != Outcome::escaped;
    }

  private:
    enum class Outcome { inside, stopped, escaped };

    static std::vector<std::string> split(const std::string& path) {
        std::vector<std::string> parts;
        std::size_t start = 0;
        while (true) {
            auto slash = path.find('/', start);
            parts.push_back(path.substr(start, slash == std::string::npos ? slash : slash - start));
            if (slash == std::string::npos)
                return parts;
            start = slash + 1;
        }
    }
    static std::vector<std::string> parent_of(const std::string& path) {
        auto parts = split(path);
        parts.pop_back();
        return parts;
    }
    static std::string join(const std::vector<std::string>& parts) {
        std::string out;
        for (const auto& p : parts)
            out += (out.empty() ? "" : "/") + p;
        return out;
    }

    // Walks `target` from the directory `at` (components below the root), updating `at`.
    Outcome follow(std::vector<std::string>& at, const std::string& target, int& hops) const {
        if (target.empty())
            return Outcome::stopped;
        if (target.front() == '/')
            return Outcome::escaped;
        auto parts = split(target);
        for (std::size_t i = 0; i < parts.size(); ++i) {
            const auto& part = parts[i];
            const bool last = i + 1 == parts.size();
            if (part.empty() || part == ".")
                continue;
            if (part == "..") {
                if (at.empty())
                    return Outcome::escaped;
                at.pop_back();
                continue;
            }
            at.push_back(part);
            const std::string path = join(at);
            if (m_dirs.count(path))
                continue;
            if (auto link = m_symlinks.find(path); link != m_symlinks.end()) {
                if (++hops > 40)
                    return Outcome::stopped; // ELOOP
                at.pop_back();
                if (auto outcome = follow(at, link->second, hops); outcome != Outcome::inside)
                    return outcome;
                continue;
            }
            if (!last)
                return Outcome::stopped; // a file (ENOTDIR) or nothing (ENOENT) on the way
        }
        return Outcome::inside;
    }

    std::map<std::string, std::string> m_files;
    std::map<std::string, std::string> m_symlinks;
    std::set<std::string> m_dirs;
};

} // namespace fuzz
