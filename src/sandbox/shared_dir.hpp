// Folders of the host that a sandbox gets read-only: the package sets its actor draws from
// (docs/actors.md#packages). A backend with a filesystem of its own (namespace, gvisor) mounts
// each at kSharedDirRoot/<name>; one without (landlock, none) lets the worker read it where it
// lies; the microvm backend shares the host's /usr and so reaches sets under /usr only. The
// worker is told where to look by Backend::shared_dir_path().
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace sandflow::sandbox {

namespace limits {
inline constexpr std::size_t kMaxSharedDirs = 16;  // per sandbox
inline constexpr std::size_t kMaxSharedDirNameBytes = 64;
}  // namespace limits

// Where the backends that mount shared folders put them.
inline constexpr std::string_view kSharedDirRoot = "/packages";

struct SharedDir {
    std::string host;  // an absolute, canonical directory of the host
    // "<language>/<set>": letters, digits, '.', '_', '-' and one '/'; no "." or ".." part.
    std::string name;
    bool operator==(const SharedDir&) const = default;
    auto operator<=>(const SharedDir&) const = default;
};

// kSharedDirRoot/<name>.
std::string mounted_path(const SharedDir& dir);

// Errc::invalid_argument naming the folder and the rule it breaks: more than
// kMaxSharedDirs, a malformed or repeated name, a host path that is not absolute and
// canonical, not a directory, the host's root, under /proc, /sys or /dev, or closed to other
// users (sandboxes run as users of their own: the folder needs o+rx, its parents o+x).
Result<void> check_shared_dirs(const std::vector<SharedDir>& dirs);

}  // namespace sandflow::sandbox
