#pragma once
// Which deploy.toml `deployctl deploy` reads: always the one of the tree it deploys (HEAD's,
// or the working tree's with --dirty), never a file the deployed tree does not have. When the
// working copy's deploy.toml differs from it (modified, deleted, untracked, ignored), the
// difference is named with the fix: a warning, or an error when the tree has none.

#include <cli/package/git_tree.hpp>
#include <common/result.hpp>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace cli::package {

struct DeployedConfig {
    std::string text;   // the deploy.toml sent with the deployment
    std::string source; // for errors' FILE:LINE:COL: "DIR/deploy.toml", or "HEAD:PATH"
    // The working copy differs from `text`: how, and the fix.
    std::optional<std::string> warning;
};

// deploy.toml in `tree` (packaged from `dir`), compared with DIR/deploy.toml on disk.
// ErrorKind::config when the deployed tree has no deploy.toml: untracked (the fix: git add
// and commit it, or --dirty), ignored by .gitignore, or nowhere at all.
common::Result<DeployedConfig> deployed_config(const std::filesystem::path& dir,
                                               const SourceTree& tree);

// There is no deploy.toml in DIR: where to run deployctl, or how to write one.
common::Error no_deploy_toml(const std::filesystem::path& dir);

// How `working` differs from `committed`, line by line, naming at most `max` differences:
// "line 12 is `keep = 3` (committed: `keep = 5`)", "line 4 added: `x`", "committed line 9
// removed: `y`", then "and N more lines differ". Empty when the texts are equal.
std::string describe_changes(std::string_view committed, std::string_view working,
                             std::size_t max = 2);

} // namespace cli::package
