// Landlock: an unprivileged, stackable wall around the filesystem and, where the kernel has
// it, TCP and signals. The namespace tier applies it on top of its mount namespace; the
// landlock tier (sandbox/landlock/) has no other filesystem wall.
//
// A plan is a list of paths, each with what may be done beneath it (an intent, turned into
// this kernel's rights when the plan is made), plus the sandbox-wide denials:
//   - every filesystem right the kernel knows is handled, so what no rule grants is refused;
//   - ABI >= 4: TCP bind and connect are handled with no rule: refused everywhere;
//   - ABI >= 6: signals to, and abstract unix sockets of, processes outside the worker's own
//     Landlock domain are refused (scoping).
// Rights the running kernel does not know are left out, so an older kernel still gets the
// rest; the ABI is negotiated once per process (abi()).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::mech {

// What a rule allows beneath its path.
enum class LandlockAccess {
    list,        // read the folder's entries, nothing beneath
    read,        // read files and folders
    read_exec,   // read and execute (the interpreters and their libraries)
    read_write,  // everything but execute (a writable folder)
    device,      // read and write an existing character device (/dev/null, ...)
    read_file,   // read one file
};

struct LandlockRule {
    std::string path;
    LandlockAccess access;
};

struct LandlockPlan {
    int abi = 0;  // 0: not available (nothing is applied)
    std::uint64_t handled_fs = 0, handled_net = 0, scoped = 0;
    struct Rule {
        std::string path;
        std::uint64_t access;
    };
    std::vector<Rule> rules;
    // Adds, in the child, read access beneath /proc/self as it resolves there (the worker's
    // own /proc/<pid>): no other process's entries, nothing else of /proc.
    bool own_proc = false;
    std::uint64_t own_proc_access = 0;
};

// The kernel's Landlock ABI version, asked once; 0 when Landlock is not available.
int landlock_abi();

// Builds the plan for this kernel (parent side). A path that does not exist on this host
// is left out (the worker cannot reach it anyway: nothing grants it).
LandlockPlan make_landlock_plan(const std::vector<LandlockRule>& rules, bool own_proc);

// Adds a rule for a folder of the sandbox's own filesystem view, which the host may lack (a
// mount point the sandbox makes): its rights are those of a folder.
void add_sandbox_folder_rule(LandlockPlan& plan, std::string path, LandlockAccess access);

// Child side, after no_new_privs, in the final filesystem view. No allocation.
ChildFailure apply_landlock(const LandlockPlan& plan);

}  // namespace sandflow::sandbox::mech
