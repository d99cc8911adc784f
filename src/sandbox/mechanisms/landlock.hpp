// Landlock: a further filesystem (and, where the kernel has it, network and signal) wall,
// applied to the worker on top of the mount namespace. Unprivileged and stackable; where
// the kernel lacks it the sandbox runs without it (doctor shows the ABI).
//
// Allowed, once the worker's view is in place: read and execute under /usr; read /etc,
// /proc and the root folder; read and write the five /dev nodes; everything but execute
// under /tmp. With ABI >= 4 no TCP bind or connect at all; with ABI >= 6 no signals to,
// and no abstract unix sockets of, processes outside the worker's own Landlock domain
// (its init included). Rights the running kernel does not know are left out, so that an
// older kernel still gets the rest.
#pragma once

#include <array>
#include <cstdint>

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::mech {

struct LandlockPlan {
    int abi = 0;  // 0: not available (nothing is applied)
    std::uint64_t handled_fs = 0, handled_net = 0, scoped = 0;
    struct Rule {
        const char* path;
        std::uint64_t access;
    };
    std::array<Rule, 6> rules{};
};

// Asks the kernel for its Landlock ABI (parent side).
LandlockPlan make_landlock_plan();

// Child side, after no_new_privs, in the final filesystem view.
ChildFailure apply_landlock(const LandlockPlan& plan);

}  // namespace sandflow::sandbox::mech
