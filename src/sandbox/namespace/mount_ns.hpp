// Mount namespace: the filesystem a sandbox sees.
//
// A fresh tmpfs becomes the root (pivot_root; the host's root is detached, not just
// hidden), holding only:
//   /usr                      the host's, bound read-only, nosuid, nodev (recursively)
//   /bin /lib /lib64 /sbin …  the host's merged-/usr symlinks, recreated (or read-only
//                             binds on hosts without merged /usr)
//   /etc                      generated: passwd and group naming only the sandbox user,
//                             hostname, hosts, nsswitch.conf, the localtime link and
//                             read-only binds of ld.so.cache and /etc/alternatives
//                             (Debian's links into /usr). No shadow, nothing else.
//   /dev                      a read-only tmpfs with null, zero, full, random, urandom
//                             (bound from the host: mknod is not allowed in a user
//                             namespace) and the fd, stdin, stdout, stderr links
//   /proc                     a new proc of the sandbox's own pid namespace, showing
//                             only process folders (subset=pid): no /proc/sys, kcore, …
//   /packages/<lang>/<set>    the sandbox's package sets (shared_dir.hpp), bound read-only,
//                             nosuid, nodev
//   /tmp                      a size- and inode-capped tmpfs, nosuid, nodev, noexec: the
//                             only writable place, and the working directory
// and the root itself is then made read-only.
//
// The plan is built in the parent (every path, option string and file's text); the child
// executes it with system calls only. A failure names the operation by its index.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "sandbox/mechanisms/child_report.hpp"
#include "sandbox/shared_dir.hpp"

namespace sandflow::sandbox::ns {

using mech::ChildFailure;

struct MountOptions {
    std::uint64_t tmpfs_bytes = 0;
    std::uint64_t tmpfs_inodes = 0;
    std::string workdir = "/tmp";  // "/tmp" or a folder under it, created empty
    std::string hostname = "sandflow";
    std::string user_name = "sandbox";  // uid 0 / gid 0 inside
    bool proc_subset_pid = true;        // Linux >= 5.8
    std::vector<SharedDir> shared;      // checked with check_shared_dirs()
};

struct MountOp {
    enum class Kind {
        make_private,  // target: mount propagation private, recursively
        tmpfs,         // target, data = options, flags
        proc,          // target, data = options, flags
        mkdir,         // target, mode
        bind,          // source -> target (existing), recursive
        touch,         // target: an empty file to bind a file onto
        symlink,       // source = link text, target = the link
        write_file,    // target, data = contents, mode
        restrict,      // target: mount_setattr(attr_set), recursive or not
        pivot_root,    // target: the new root
        // source: a copy of the host's tree there, recursive, detached (open_tree), kept as
        // `slot` until attached; made before the new root hides the host's /tmp, so that a
        // folder under it can still be given.
        copy_tree,
        attach_tree,  // slot -> target (existing) (move_mount)
    };
    Kind kind;
    std::string source, target, data;
    unsigned long flags = 0;
    std::uint64_t attr_set = 0;
    bool recursive = false;
    mode_t mode = 0;
    std::string what;  // for error messages: "bind /usr read-only"
    int slot = -1;     // copy_tree, attach_tree: which copy (< limits::kMaxSharedDirs)
};

struct MountPlan {
    std::vector<MountOp> ops;
};

// Reads the host (which of /bin, /lib… are links) and builds the plan.
Result<MountPlan> make_mount_plan(const MountOptions& options);

// Child side, inside the new mount (and pid) namespace with CAP_SYS_ADMIN there.
ChildFailure apply_mount_plan(const MountPlan& plan);

// The operation a failed step names, or "" when the step is not a mount step.
std::string describe_mount_step(const MountPlan& plan, int step);

}  // namespace sandflow::sandbox::ns
