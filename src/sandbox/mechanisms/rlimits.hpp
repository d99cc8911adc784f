// rlimits: per-process caps that hold even where no cgroup can be written.
//
// nofile, nproc (counted per real uid in a user namespace: per sandbox in the namespace tier,
// per sandbox uid in the landlock tier), fsize (no single file larger than the writable
// folder's cap), core 0 (no core dumps of sandboxed memory), cpu (seconds over the
// sandbox's life; see sandbox_limits.hpp). Memory is never capped with RLIMIT_AS: V8
// reserves far more address space than it uses, so node would not start. It is the
// cgroup's job, and RLIMIT_DATA's where no memory cgroup can be made (per process, not
// per sandbox: a sandbox of n processes may hold n times it).
//
// rlimits are copied into every process at fork, so they are fixed for a sandbox's life:
// no one can change them in all of its processes at once.
#pragma once

#include <sys/resource.h>

#include <array>
#include <cstdint>
#include <optional>

#include "sandbox/mechanisms/child_report.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox::mech {

struct RlimitPlan {
    struct Entry {
        int resource = -1;  // -1: unused
        rlimit value{};
    };
    std::array<Entry, 6> entries{};
    // The RLIMIT_NPROC it sets (soft = hard).
    rlim_t nproc() const {
        for (const auto& e : entries)
            if (e.resource == RLIMIT_NPROC) return e.value.rlim_cur;
        return RLIM_INFINITY;
    }
};

// The RLIMIT_NPROC a sandbox gets. Both RLIMIT_NPROC and the pids cgroup count every task
// of the sandbox (threads and its init included), and the kernel checks the rlimit first.
// With a pids cgroup: max(nproc, pids + 1), so that the cgroup, whose refusals are counted
// (pids.events) and reported as a crossed limit, is what refuses the fork; the rlimit stays
// a backstop. Without one: min(nproc, pids), so the pids limit still holds.
std::uint32_t effective_nproc(const SandboxLimits& limits, bool pids_cgroup);

// Each value capped at the runtime's own hard limit. `nproc`: the RLIMIT_NPROC to set
// (effective_nproc() where the kernel counts per sandbox). `data_bytes`: an RLIMIT_DATA
// (private writable memory, which V8's address-space reservations do not count against,
// unlike RLIMIT_AS) for a sandbox that has no memory cgroup; unset: none.
RlimitPlan make_rlimit_plan(const SandboxLimits& limits, std::uint32_t nproc,
                            std::optional<std::uint64_t> data_bytes = std::nullopt);

// Child side.
ChildFailure apply_rlimits(const RlimitPlan& plan);

}  // namespace sandflow::sandbox::mech
