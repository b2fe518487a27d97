#include <cli/package/collect.hpp>
#include <cli/package/deployed_config.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace cli::package {

namespace {

namespace fs = std::filesystem;
using common::ErrorKind;

constexpr std::string_view k_file = "deploy.toml";
constexpr std::size_t k_max_shown = 60;             // characters of a line quoted in a message
constexpr std::size_t k_max_diff_cells = 4'000'000; // lines × lines compared, at most

std::string shown(std::string_view line) {
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
        line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r'))
        line.remove_suffix(1);
    if (line.empty())
        return "(blank)";
    if (line.size() > k_max_shown)
        return fmt::format("`{}…`", line.substr(0, k_max_shown));
    return fmt::format("`{}`", line);
}

// The path as the user would type it from where deployctl runs.
std::string display_path(const fs::path& dir) {
    return (dir / k_file).lexically_normal().generic_string();
}

} // namespace

namespace detail {

std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        auto nl = text.find('\n');
        lines.push_back(text.substr(0, nl));
        if (nl == std::string_view::npos)
            break;
        text.remove_prefix(nl + 1);
    }
    return lines;
}

} // namespace detail

common::Error no_deploy_toml(const fs::path& dir) {
    return common::make_error(
        ErrorKind::config,
        fmt::format("no deploy.toml in {}: run deployctl in your app's folder, pass -C DIR or the "
                    "app's DIR, or write a deploy.toml (app = \"NAME\" is the minimum; deployctl "
                    "init writes one)",
                    fs::absolute(dir).lexically_normal().string()));
}

std::string describe_changes(std::string_view committed, std::string_view working,
                             std::size_t max) {
    auto a = detail::split_lines(committed);
    auto b = detail::split_lines(working);
    if (a == b)
        return {};
    const std::size_t n = a.size(), m = b.size();
    if ((n + 1) * (m + 1) > k_max_diff_cells)
        return {};
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    std::vector<std::vector<std::uint32_t>> lcs(n + 1, std::vector<std::uint32_t>(m + 1, 0));
    for (std::size_t i = n; i-- > 0;)
        for (std::size_t j = m; j-- > 0;)
            lcs[i][j] =
                a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    std::vector<std::string> items;
    std::size_t i = 0, j = 0;
    while (i < n || j < m) {
        if (i < n && j < m && a[i] == b[j]) {
            ++i, ++j;
            continue;
        }
        // One run of differences: committed lines removed, working lines added.
        std::vector<std::size_t> removed, added;
        while ((i < n || j < m) && !(i < n && j < m && a[i] == b[j])) {
            if (j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]))
                added.push_back(j++);
            else
                removed.push_back(i++);
        }
        std::size_t pairs = std::min(removed.size(), added.size());
        for (std::size_t k = 0; k < pairs; ++k)
            items.push_back(fmt::format("line {} is {} (committed: {})", added[k] + 1,
                                        shown(b[added[k]]), shown(a[removed[k]])));
        for (std::size_t k = pairs; k < added.size(); ++k)
            items.push_back(fmt::format("line {} added: {}", added[k] + 1, shown(b[added[k]])));
        for (std::size_t k = pairs; k < removed.size(); ++k)
            items.push_back(
                fmt::format("committed line {} removed: {}", removed[k] + 1, shown(a[removed[k]])));
    }
    std::string text;
    for (std::size_t k = 0; k < items.size() && k < max; ++k)
        text += (k ? "; " : "") + items[k];
    if (items.size() > max) {
        auto more = items.size() - max;
        text += fmt::format("; and {} more line{} differ{}", more, more == 1 ? "" : "s",
                            more == 1 ? "s" : "");
    }
    return text;
}

common::Result<DeployedConfig> deployed_config(const fs::path& dir, const SourceTree& tree) {
    const fs::path file = dir / k_file;
    const std::string path = display_path(dir);
    std::error_code ec;
    const bool on_disk = fs::exists(file, ec);
    std::optional<std::string> working;
    if (on_disk) {
        auto text = common::read_file(file);
        if (!text)
            return text.error();
        working = std::move(*text);
    }
    TRY_ASSIGN(auto committed, tree.read_path(std::string(k_file)));
    if (!committed) {
        if (!on_disk)
            return no_deploy_toml(dir);
        if (tree.mode() == Mode::dirty)
            return common::make_error(
                ErrorKind::config,
                fmt::format("{} is ignored by git (.gitignore): deployctl deploys what git would "
                            "commit, and reads deploy.toml from it; remove it from .gitignore, "
                            "then git add {} && git commit",
                            path, path));
        return common::make_error(
            ErrorKind::config,
            fmt::format("{} is not committed: deployctl deploys the last commit ({}) and reads "
                        "its deploy.toml; commit it (git add {} && git commit -m \"Add "
                        "deploy.toml\"), or deploy the working tree with --dirty",
                        path, tree.commit().substr(0, 7), path));
    }
    auto text = std::move(committed);
    DeployedConfig config;
    // --dirty: the tree's deploy.toml is the working copy.
    const bool same = tree.mode() == Mode::dirty || (working && *working == *text);
    config.source =
        same ? file.lexically_normal().string()
             : fmt::format("HEAD:{}{}", tree.prefix().empty() ? "" : tree.prefix() + "/", k_file);
    if (!same && !working) {
        config.warning = fmt::format("{} is deleted in the working copy; deploying the committed "
                                     "one (git restore {} brings it back)",
                                     path, path);
    } else if (!same) {
        auto changes = describe_changes(*text, *working);
        config.warning = fmt::format("{} has uncommitted changes{}; deploying the committed one "
                                     "(commit it, or deploy with --dirty)",
                                     path, changes.empty() ? "" : " (" + changes + ")");
    }
    config.text = std::move(*text);
    return config;
}

} // namespace cli::package
