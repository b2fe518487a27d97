#include <common/hash.hpp>
#include <common/storable_path.hpp>
#include <common/tree.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace common {

namespace {

Error bad(std::string message) {
    return make_error(ErrorKind::bad_request, std::move(message));
}

// A folder of the manifest being built into nodes; names are views into its paths (the
// manifest outlives the build), ordered as strings are.
struct Dir {
    std::map<std::string_view, Dir> dirs;
    std::map<std::string_view, const ManifestEntry*> files;
};

std::string_view kind_code(TreeEntry::Kind kind) {
    switch (kind) {
    case TreeEntry::Kind::tree:
        return "d";
    case TreeEntry::Kind::file:
        return "f";
    case TreeEntry::Kind::executable:
        return "x";
    case TreeEntry::Kind::symlink:
        return "l";
    }
    return "f";
}

// `text` as nlohmann::json's dump() writes a string (escapes, and invalid UTF-8 refused, as
// its own); a node's bytes are dump()'s, written without a JSON array per entry (a tree of
// 20,000 files has as many).
void append_json_string(std::string& out, const std::string& text) {
    // Printable ASCII but '"' and '\\' (every digest, most names) is written as it is.
    const bool plain = std::all_of(text.begin(), text.end(), [](char c) {
        return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
    });
    if (!plain) {
        out += nlohmann::json(text).dump();
        return;
    }
    out += '"';
    out += text;
    out += '"';
}

// One entry as dump() writes [name, kind, digest, size] or [name, "l", target].
void append_entry(std::string& out, const TreeEntry& e) {
    out += '[';
    append_json_string(out, e.name);
    out += ",\"";
    out += kind_code(e.kind);
    out += "\",";
    if (e.kind == TreeEntry::Kind::symlink) {
        append_json_string(out, e.target);
    } else {
        append_json_string(out, e.digest);
        if (e.kind != TreeEntry::Kind::tree)
            fmt::format_to(std::back_inserter(out), ",{}", e.size);
    }
    out += ']';
}

// Serializes `dir` after its subfolders, adding every node to `tree`; returns its digest.
std::string add_nodes(const Dir& dir, Tree& tree) {
    TreeNode node;
    auto subdir = dir.dirs.begin();
    auto file = dir.files.begin();
    while (subdir != dir.dirs.end() || file != dir.files.end()) {
        TreeEntry e;
        if (file == dir.files.end() || (subdir != dir.dirs.end() && subdir->first < file->first)) {
            e.name = subdir->first;
            e.kind = TreeEntry::Kind::tree;
            e.digest = add_nodes(subdir->second, tree);
            ++subdir;
        } else {
            const auto& m = *file->second;
            e.name = file->first;
            e.kind = m.kind == EntryKind::symlink      ? TreeEntry::Kind::symlink
                     : m.kind == EntryKind::executable ? TreeEntry::Kind::executable
                                                       : TreeEntry::Kind::file;
            e.digest = m.digest;
            e.size = m.size;
            e.target = m.target;
            ++file;
        }
        node.entries.push_back(std::move(e));
    }
    node.bytes.push_back('[');
    for (std::size_t i = 0; i < node.entries.size(); ++i) {
        if (i > 0)
            node.bytes.push_back(',');
        append_entry(node.bytes, node.entries[i]);
    }
    node.bytes.push_back(']');
    node.digest = sha256_hex(node.bytes);
    auto digest = node.digest;
    tree.nodes.try_emplace(digest, std::move(node));
    return digest;
}

bool safe_name(std::string_view name) {
    return !name.empty() && name != "." && name != ".." &&
           name.find_first_of(std::string_view("/\\\0", 3)) == std::string_view::npos;
}

Result<TreeEntry> parse_entry(const nlohmann::json& j, ManifestFault& fault) {
    if (!j.is_array() || j.size() < 3 || !j[0].is_string() || !j[1].is_string() ||
        !j[2].is_string())
        return bad("a tree node entry must be [\"name\", kind, digest or target, ...]");
    TreeEntry e;
    e.name = j[0].get<std::string>();
    if (e.name.size() > k_max_name_length)
        return bad(
            fmt::format("a tree node entry's name is longer than {} bytes", k_max_name_length));
    // The store's rule for names, in the words validate_manifest() uses for paths.
    if (auto flaw = find_path_flaw(e.name)) {
        fault = ManifestFault::unstorable_path;
        return bad(fmt::format("tree node entry \"{}\" contains {} at byte {}: {}",
                               escape_path(e.name), flaw->what, flaw->offset,
                               k_storable_path_rule));
    }
    if (!safe_name(e.name))
        return bad(
            fmt::format("tree node entry \"{}\" is not a safe file name", escape_path(e.name)));
    const auto& kind = j[1].get_ref<const std::string&>();
    const auto& third = j[2].get_ref<const std::string&>();
    const bool file = kind == "f" || kind == "x";
    if (kind == "d" && j.size() == 3) {
        e.kind = TreeEntry::Kind::tree;
        e.digest = third;
    } else if (file && j.size() == 4 && j[3].is_number_unsigned()) {
        e.kind = kind == "f" ? TreeEntry::Kind::file : TreeEntry::Kind::executable;
        e.digest = third;
        e.size = j[3].get<std::uint64_t>();
    } else if (kind == "l" && j.size() == 3) {
        e.kind = TreeEntry::Kind::symlink;
        e.target = third;
        if (e.target.size() > k_max_path_length)
            return bad(fmt::format("symlink \"{}\" has a target longer than {} bytes",
                                   escape_path(e.name), k_max_path_length));
        if (auto flaw = find_path_flaw(e.target)) {
            fault = ManifestFault::unstorable_path;
            return bad(fmt::format("symlink \"{}\" has a target \"{}\" that contains {} at byte "
                                   "{}: {}",
                                   escape_path(e.name), escape_path(e.target), flaw->what,
                                   flaw->offset, k_storable_path_rule));
        }
    } else {
        return bad(fmt::format("tree node entry \"{}\" has an unknown kind or shape",
                               escape_path(e.name)));
    }
    if (e.kind != TreeEntry::Kind::symlink && !is_sha256_hex(e.digest))
        return bad(
            fmt::format("tree node entry \"{}\" has an invalid digest", escape_path(e.name)));
    return e;
}

} // namespace

Tree build_tree(const Manifest& manifest) {
    Dir root;
    for (const auto& entry : manifest.entries) {
        Dir* dir = &root;
        std::string_view path = entry.path;
        for (auto slash = path.find('/'); slash != std::string_view::npos; slash = path.find('/')) {
            dir = &dir->dirs[path.substr(0, slash)];
            path.remove_prefix(slash + 1);
        }
        dir->files[path] = &entry;
    }
    Tree tree;
    tree.root = add_nodes(root, tree);
    return tree;
}

Result<TreeNode> parse_node(std::string bytes, ManifestFault* fault) {
    ManifestFault ignored = ManifestFault::malformed;
    if (!fault)
        fault = &ignored;
    if (bytes.size() > k_max_node_bytes)
        return bad(fmt::format("a tree node of {} bytes is larger than the limit of {}",
                               bytes.size(), k_max_node_bytes));
    auto json = nlohmann::json::parse(bytes, nullptr, false);
    if (json.is_discarded() || !json.is_array())
        return bad("a tree node must be a JSON array of entries");
    TreeNode node;
    node.entries.reserve(json.size());
    for (const auto& item : json) {
        auto entry = parse_entry(item, *fault);
        if (!entry)
            return entry.error();
        if (!node.entries.empty() && !(node.entries.back().name < entry->name))
            return bad(fmt::format("tree node entries must be sorted by name and distinct (\"{}\" "
                                   "after \"{}\")",
                                   escape_path(entry->name),
                                   escape_path(node.entries.back().name)));
        node.entries.push_back(std::move(*entry));
    }
    node.digest = sha256_hex(bytes);
    node.bytes = std::move(bytes);
    return node;
}

Result<Manifest> flatten_tree(const std::string& root, const NodeReader& node) {
    if (!is_sha256_hex(root))
        return bad("the tree's root is not a sha256 digest");
    Manifest manifest;
    // Depth-first with an explicit stack: (digest, path prefix, depth).
    struct Pending {
        std::string digest;
        std::string prefix;
        int depth;
    };
    std::vector<Pending> stack{{root, "", 0}};
    std::size_t files = 0, folders = 0, path_bytes = 0;
    // Each distinct node is read once, however many folders name it.
    std::map<std::string, std::shared_ptr<const TreeNode>> read;
    while (!stack.empty()) {
        auto current = std::move(stack.back());
        stack.pop_back();
        if (current.depth > 256)
            return bad("the tree is deeper than 256 folders");
        auto cached = read.find(current.digest);
        if (cached == read.end()) {
            auto parsed = node(current.digest);
            if (!parsed)
                return parsed.error();
            if (!*parsed)
                return make_error(ErrorKind::internal, "no tree node " + current.digest);
            cached = read.emplace(current.digest, std::move(*parsed)).first;
        }
        for (const auto& e : cached->second->entries) {
            auto path = current.prefix + e.name;
            if (path.size() > k_max_path_length)
                return bad(
                    fmt::format("a path of the tree is longer than {} bytes", k_max_path_length));
            if (e.kind == TreeEntry::Kind::tree) {
                // A node named by many folders is walked once for each: they count.
                if (++folders > k_max_manifest_entries)
                    return bad(
                        fmt::format("the tree has more than {} folders", k_max_manifest_entries));
                stack.push_back({e.digest, path + "/", current.depth + 1});
                continue;
            }
            if (++files > k_max_manifest_entries)
                return bad(fmt::format("the tree has more than {} files; the limit is {}",
                                       k_max_manifest_entries, k_max_manifest_entries));
            // As much as a manifest sent whole may hold (its body's limit).
            path_bytes += path.size() + e.target.size();
            if (path_bytes > k_max_tree_path_bytes)
                return bad(fmt::format("the tree's paths and symlink targets add up to more "
                                       "than {} bytes",
                                       k_max_tree_path_bytes));
            ManifestEntry m;
            m.path = std::move(path);
            m.kind = e.kind == TreeEntry::Kind::symlink      ? EntryKind::symlink
                     : e.kind == TreeEntry::Kind::executable ? EntryKind::executable
                                                             : EntryKind::file;
            m.digest = e.digest;
            m.size = e.size;
            m.target = e.target;
            manifest.entries.push_back(std::move(m));
        }
    }
    return manifest;
}

} // namespace common
