// The landlock tier's writable folder: one private, emptied folder per sandbox under the
// runtime's work root, owned by the sandbox's uid with mode 0700, the only place Landlock
// lets the worker write, its working directory, HOME and TMPDIR. Removed (after the
// sandbox's last process is gone) when the sandbox ends.
//
// There is no tmpfs to cap its size (mounting one needs a mount namespace), so the runtime
// enforces the cap itself: RLIMIT_FSIZE bounds any one file, and a watcher thread per
// runtime process walks every live sandbox's folder each kWorkDirScanInterval, adding up
// the blocks and entries; a folder past its tmpfs_bytes or tmpfs_inodes limit signals the
// sandbox's limit event and the runtime kills the sandbox. Between two walks a script can
// write past the cap by what the disk takes in one interval, into its own folder only.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/error.hpp"

namespace sandflow::sandbox::landlock {

inline constexpr std::chrono::milliseconds kWorkDirScanInterval{100};

// Makes `root` (mode 0711: sandboxes may pass through it to their own folder, not list it)
// if needed and checks it is a real folder of this uid, not a link someone planted.
Result<void> prepare_work_root(const std::string& root);

// A new empty folder `root`/`name` owned by uid:gid, mode 0700.
Result<std::string> make_work_dir(const std::string& root, const std::string& name, uid_t uid,
                                  gid_t gid);

// Removes a work folder and everything in it, following no links. Best effort; logs what
// it could not remove.
void remove_work_dir(const std::string& path);

// What a walk found.
struct WorkDirUsage {
    std::uint64_t bytes = 0, entries = 0;
};
// Walks `path` (not following links), stopping once `max_entries` are counted.
WorkDirUsage measure_work_dir(const std::string& path, std::uint64_t max_entries);

// One sandbox's folder, watched until destroyed.
class WorkDirWatch {
  public:
    // `notify_fd`: an eventfd the watcher writes 1 to once the folder passes a limit.
    WorkDirWatch(std::string path, std::uint64_t max_bytes, std::uint64_t max_entries,
                 int notify_fd);
    ~WorkDirWatch();
    WorkDirWatch(const WorkDirWatch&) = delete;
    WorkDirWatch& operator=(const WorkDirWatch&) = delete;

    // The limit crossed ("tmpfs_bytes" or "tmpfs_inodes") with its value; empty when none.
    struct Crossed {
        std::string limit;
        std::uint64_t value = 0;
    };
    Crossed crossed() const;

    struct Entry;

  private:
    std::shared_ptr<Entry> entry_;
};

}  // namespace sandflow::sandbox::landlock
