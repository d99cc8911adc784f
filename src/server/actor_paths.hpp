// Which files the runtime server may load: only files under its --actors roots.
//
// A `load` names a file by path; the path is resolved (relative paths against each root in
// turn), every symlink followed, and the real file must lie under one of the roots' real
// paths. `..` components are refused outright, so a path that only "happens" to come back
// inside a root is refused too.
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace sandflow::server {

// The roots as real, absolute directories; an error names a root that is missing or not a
// directory.
Result<std::vector<std::filesystem::path>> canonical_roots(
    const std::vector<std::filesystem::path>& roots);

// The real path of `given` if it is a regular .py/.js file under one of `roots` (which
// must be canonical). Errors are Errc::invalid_argument and say which rule was broken
// (data.reason: no_roots, parent_reference, not_found, outside_roots, not_a_file,
// bad_extension).
Result<std::filesystem::path> resolve_actor_path(const std::vector<std::filesystem::path>& roots,
                                                 std::string_view given);

// Actor scripts found under the roots: *.actor.py and *.actor.js at any depth, and every
// .py / .js file directly in a folder named `actors`. Symlinked folders are not entered;
// symlinked files are kept only when they resolve inside a root. At most
// limits::kMaxDiscoveredFiles directory entries are looked at; sorted.
std::vector<std::filesystem::path> discover_actor_files(
    const std::vector<std::filesystem::path>& roots);

}  // namespace sandflow::server
