#include "sandbox/mechanisms/rlimits.hpp"

#include <algorithm>
#include <cstdint>

namespace sandflow::sandbox::mech {

std::uint32_t effective_nproc(const SandboxLimits& limits, bool pids_cgroup) {
    if (!pids_cgroup) return std::min(limits.nproc, limits.pids);
    const std::uint32_t above = limits.pids == UINT32_MAX ? limits.pids : limits.pids + 1;
    return std::max(limits.nproc, above);
}

RlimitPlan make_rlimit_plan(const SandboxLimits& limits, std::uint32_t nproc,
                            std::optional<std::uint64_t> data_bytes) {
    auto same = [](rlim_t v) { return rlimit{v, v}; };
    RlimitPlan p;
    // Raising a hard limit needs CAP_SYS_RESOURCE on the host, which the sandbox never has:
    // each value is capped at the runtime's own hard limit.
    p.entries = {{
        {RLIMIT_NOFILE, same(limits.open_files)},
        {RLIMIT_NPROC, same(nproc)},
        {RLIMIT_FSIZE, same(limits.tmpfs_bytes)},
        {RLIMIT_CORE, same(0)},
        // The soft limit sends SIGXCPU, the hard one a second later SIGKILL.
        {RLIMIT_CPU, rlimit{limits.cpu_seconds, static_cast<rlim_t>(limits.cpu_seconds) + 1}},
        {data_bytes ? RLIMIT_DATA : -1, same(data_bytes.value_or(0))},
    }};
    for (auto& e : p.entries) {
        if (e.resource < 0) continue;
        rlimit cur{};
        if (::getrlimit(static_cast<__rlimit_resource_t>(e.resource), &cur) != 0) continue;
        if (cur.rlim_max != RLIM_INFINITY) {
            if (e.value.rlim_max > cur.rlim_max) e.value.rlim_max = cur.rlim_max;
            if (e.value.rlim_cur > e.value.rlim_max) e.value.rlim_cur = e.value.rlim_max;
        }
    }
    return p;
}

ChildFailure apply_rlimits(const RlimitPlan& plan) {
    for (const auto& e : plan.entries) {
        if (e.resource < 0) continue;
        if (::setrlimit(static_cast<__rlimit_resource_t>(e.resource), &e.value) != 0)
            return failed_at(kStepRlimit);
    }
    return {};
}

}  // namespace sandflow::sandbox::mech
