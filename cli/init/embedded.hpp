#pragma once
// The files of templates/, compiled into deployctl (a .cpp generated at build
// time by embed_templates.cmake), so that `deployctl init` needs no files.

#include <span>
#include <string_view>

namespace cli::init {

struct EmbeddedFile {
    std::string_view path;    // relative to templates/, e.g. "go/Dockerfile"
    std::string_view content; // the bytes as written
};

// Sorted by path.
std::span<const EmbeddedFile> embedded_files();

} // namespace cli::init
