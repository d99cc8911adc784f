// cgroup limits on memory, pids and CPU for one sandbox.
//
// Where the runtime may write cgroups (as root, typically), each sandbox gets its own
// group per controller, created under the runtime's own group so that limits set on the
// runtime still hold for its sandboxes: <mount>/<runtime's group>/sandflow/<id> (the
// sandflow folder exists only while a sandbox does). The
// parent puts the sandbox's init into it before releasing it (so everything the sandbox
// ever runs is inside), reads why it died afterwards, and removes it.
//
// Hierarchies: cgroup v1 (separate memory, pids and cpu mounts, as on these machines).
// A v2 hierarchy is detected and reported by `doctor` but not used yet. Where nothing is
// writable the sandbox still runs, with rlimits only (rlimits.hpp), and doctor says so.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox::ns {

// What this host lets Sandflow use; found once.
struct CgroupSupport {
    // Per controller ("memory", "pids", "cpu"): the folder under which sandboxes' groups
    // are created, or empty with the reason in `why`.
    struct Controller {
        std::string name, base, why;
        bool usable() const { return !base.empty(); }
    };
    std::vector<Controller> controllers;
    bool v2_mounted = false;
    std::string summary() const;  // "memory, pids, cpu (cgroup v1)" or "none: <why>"
};

CgroupSupport detect_cgroup_support();

// Why a sandbox died, as far as its cgroups know.
struct CgroupVerdict {
    std::string limit;  // "memory", "pids"; empty when no limit was hit
    std::uint64_t value = 0;
};

class SandboxCgroup {
  public:
    // Creates the groups and writes the limits. Nothing is created when no controller is
    // usable.
    static Result<SandboxCgroup> create(const CgroupSupport& support, const std::string& id,
                                        const SandboxLimits& limits);
    SandboxCgroup() = default;
    SandboxCgroup(SandboxCgroup&& o) noexcept = default;
    SandboxCgroup& operator=(SandboxCgroup&& o) noexcept;
    SandboxCgroup(const SandboxCgroup&) = delete;
    SandboxCgroup& operator=(const SandboxCgroup&) = delete;
    ~SandboxCgroup() { remove(); }

    Result<void> attach(pid_t pid) const;
    // After the sandbox died: the limit it ran into, if any. The memory controller
    // counts OOM kills; pids counts refused forks.
    CgroupVerdict verdict() const;
    // Removes the groups (the sandbox must be gone); idempotent.
    void remove();
    bool empty() const { return dirs_.empty(); }

  private:
    struct Dir {
        std::string controller, path;
    };
    std::vector<Dir> dirs_;
    SandboxLimits limits_;
};

}  // namespace sandflow::sandbox::ns
