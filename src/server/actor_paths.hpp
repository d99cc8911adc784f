// Which files the runtime server may load: only files under its --actors roots.
//
// A `load` names a file by path; the path is resolved (relative paths against each root in
// turn), every symlink followed, and the real file must lie under one of the roots' real
// paths. `..` components are refused outright, so a path that only "happens" to come back
// inside a root is refused too.
#pragma once

#include <filesystem>
#include <string>
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

// The script `given` names, read: resolve_actor_path(), then open_actor_file() on its
// result, so that the rules hold for the file actually read.
struct ActorFile {
    std::filesystem::path path;  // real
    std::string source;
};
Result<ActorFile> read_actor_file(const std::vector<std::filesystem::path>& roots,
                                  std::string_view given);
// Opens `real` (a path resolve_actor_path() returned) and reads it, checking the rules
// again on the file opened, through its /proc/self/fd link: a folder on the path swapped
// for a symlink between the check and the open would otherwise lead out of the roots. A
// final symlink is not followed, a FIFO does not block, and the size is checked against
// limits::kMaxScriptBytes before reading. `given` names the file in errors.
Result<ActorFile> open_actor_file(const std::vector<std::filesystem::path>& roots,
                                  const std::filesystem::path& real, std::string_view given);

// Actor scripts found under the roots: *.actor.py and *.actor.js at any depth, and every
// .py / .js file directly in a folder named `actors`. Symlinked folders are not entered;
// symlinked files are kept only when they resolve inside a root. At most
// limits::kMaxDiscoveredFiles directory entries are looked at; sorted.
std::vector<std::filesystem::path> discover_actor_files(
    const std::vector<std::filesystem::path>& roots);

}  // namespace sandflow::server
