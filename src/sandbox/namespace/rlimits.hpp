// rlimits: per-process caps that hold even where no cgroup can be written.
//
// nofile, nproc (counted per user namespace on Linux >= 5.14, so per sandbox), fsize (no
// single file larger than the tmpfs), core 0 (no core dumps of sandboxed memory), cpu
// (seconds over the sandbox's life; see sandbox_limits.hpp). Memory is not capped with
// RLIMIT_AS: V8 reserves far more address space than it uses, so node would not start;
// memory is the cgroup's job.
#pragma once

#include <sys/resource.h>

#include <array>

#include "sandbox/namespace/child_report.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox::ns {

struct RlimitPlan {
    struct Entry {
        int resource;
        rlimit value;
    };
    std::array<Entry, 5> entries{};
};

RlimitPlan make_rlimit_plan(const SandboxLimits& limits);

// Child side.
ChildFailure apply_rlimits(const RlimitPlan& plan);

}  // namespace sandflow::sandbox::ns
