// User namespace: who the sandbox runs as.
//
// Inside, the worker is uid 0 / gid 0 of its own user namespace with no capabilities
// (capabilities.hpp), mapped to one host id:
// - runtime is root: the sandbox's root is host nobody/nogroup (65534), so a process that
//   escaped every other layer would still own nothing on the host. The parent may keep
//   `setgroups` allowed (it holds CAP_SETGID in the host namespace), and the child drops
//   the runtime's supplementary groups, host root's group included.
// - runtime is an ordinary user: the only id it may map is its own; setgroups must be
//   denied first, so the child keeps the caller's supplementary groups (shown as the
//   overflow group inside), as with any unprivileged sandbox.
// The parent writes the maps after clone() and before it releases the child.
#pragma once

#include <sys/types.h>

#include <string>

#include "core/error.hpp"
#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::ns {

using mech::ChildFailure;

// Host id for the sandbox's root when the runtime is root.
inline constexpr uid_t kUnprivilegedHostId = 65534;  // nobody / nogroup on Debian

struct IdMapping {
    uid_t host_uid = 0;
    gid_t host_gid = 0;
    bool deny_setgroups = true;    // written to /proc/<pid>/setgroups before gid_map
    std::string uid_map, gid_map;  // "0 <host id> 1\n"
};

// Decided once from the runtime's own credentials.
IdMapping make_id_mapping();

// Parent side: writes setgroups, uid_map and gid_map of `pid`.
Result<void> write_id_maps(pid_t pid, const IdMapping& mapping);

// Child side, after the maps are written: becomes uid/gid 0 of the namespace and, when
// allowed, drops supplementary groups.
ChildFailure become_sandbox_root(const IdMapping& mapping);

}  // namespace sandflow::sandbox::ns
