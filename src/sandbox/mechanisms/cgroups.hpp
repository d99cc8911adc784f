// cgroup limits on memory, pids and CPU for one sandbox, changed live, and the events that
// say a limit was crossed.
//
// Where the runtime may write cgroups (as root, typically), each sandbox gets its own
// group per controller, created under the runtime's own group so that limits set on the
// runtime still hold for its sandboxes: <mount>/<runtime's group>/sandflow/<id> (the
// sandflow folder exists only while a sandbox or a spare does). The sandbox's first process
// enters it before it runs anything else (CgroupEntry: so everything the sandbox ever runs
// is inside); the parent reads why it died afterwards, and removes it.
//
// Hierarchies: cgroup v1 (separate memory, pids and cpu mounts, as on these machines).
// A v2 hierarchy is detected and reported by `doctor` but not used yet. Where nothing is
// writable the sandbox still runs, with rlimits only (rlimits.hpp), and doctor says so.
//
// Limit events: one eventfd per sandbox becomes readable when
//   - the memory cgroup runs out of memory: the kernel signals it, registered through v1's
//     cgroup.event_control on memory.oom_control;
//   - the pids cgroup refused a fork: v1's pids.events counts refusals ("max") but the kernel
//     wakes no one when it does (on Linux 6.18 neither poll(POLLPRI) nor inotify IN_MODIFY
//     on pids.events fires in v1), so one thread per runtime process reads every live
//     sandbox's pids.events each kPidsScanInterval and signals the eventfd once the count
//     moved. A read costs a few microseconds (~7 us on a loaded 2-vCPU machine), so 100
//     sandboxes cost ~0.7 % of a CPU; a refused fork is seen within one interval.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "sandbox/mechanisms/child_report.hpp"
#include "sandbox/process.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox::mech {

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

// A name for a new sandbox's groups, unique on this host even when pids are reused:
// "<runtime pid>-<random per runtime process>-<counter>".
std::string new_group_id();

// Removes the groups that runtimes which are gone left behind (a runtime killed with
// SIGKILL cannot remove its own): those whose runtime pid no longer runs and that hold no
// process (rmdir refuses a group with one). Returns how many went.
std::size_t remove_stale_groups(const CgroupSupport& support);

// What a backend's create() takes for its sandboxes: detect_cgroup_support(), once the groups
// left behind are removed (remove_stale_groups(), logged when there were any).
CgroupSupport backend_cgroups();

// How often refused forks are looked for (see above): also the longest a fork bomb runs on
// at its pids limit before the runtime hears of it.
inline constexpr std::chrono::milliseconds kPidsScanInterval{100};
// How long crossed() waits, after an OOM notification, for the OOM kill to be counted.
inline constexpr std::chrono::milliseconds kOomKillWait{50};

// Why a sandbox died, as far as its cgroups know.
struct CgroupVerdict {
    std::string limit;  // "memory", "pids"; empty when no limit was hit
    std::uint64_t value = 0;
};

// A sandbox's groups as its child enters them: each group's v1 `tasks` file, opened by the
// parent before clone() (with the parent's credentials, which the kernel checks), for the
// child to move itself in with enter_cgroups() before it runs anything of the sandbox's. A
// thread that moves itself ("0" to `tasks`) is the one migration that skips the kernel's
// global threadgroup lock, whose write side waits for an RCU grace period (~1-10 ms on these
// VMs) unless another migration took it moments before; moving another process by pid, as
// writing its pid to cgroup.procs does, takes that lock every time. The child is single-
// threaded then, so moving its one thread moves the process, and everything it forks later
// starts inside. Owned by the parent; the child only reads the descriptor numbers.
struct CgroupEntry {
    static constexpr int kMax = 3;  // memory, pids, cpu
    UniqueFd fds[kMax];
    int count = 0;
};

// Child side, async-signal-safe: writes "0" to each descriptor of `entry`.
ChildFailure enter_cgroups(const CgroupEntry& entry) noexcept;

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

    // Moves the process `pid` into the groups from outside (the runtime's side).
    Result<void> attach(pid_t pid) const;
    // The descriptors its child enters the groups through (CgroupEntry); none without groups.
    Result<CgroupEntry> open_entry() const;
    // Whether this sandbox has a group of `controller` ("memory", "pids", "cpu").
    bool has(std::string_view controller) const;
    // Writes the memory (and memory+swap), pids and CPU limits of `limits` into the running
    // groups. False, with nothing changed, when one that differs has no group here or the
    // kernel refuses the new value (a memory limit below what the sandbox uses and cannot
    // reclaim: EBUSY); an error when a write fails otherwise (what was written is restored).
    Result<bool> update(const SandboxLimits& limits);
    // Starts the limit events (see above); idempotent. Both counters start at zero in a new
    // group, so a limit crossed before this is still found by crossed(), only not announced.
    void watch();
    // The limit events' descriptor; -1 without a memory or pids group, or before watch().
    int event_fd() const;
    // The limit the sandbox crossed so far, if any: OOM kills counted in memory.oom_control,
    // refused forks in pids.events (the groups are new, so any count is this sandbox's).
    // Drains the descriptor. After an OOM notification it waits up to kOomKillWait for the
    // kill to be counted (the kernel notifies just before its OOM killer runs).
    std::optional<CgroupVerdict> crossed();
    // After the sandbox died: the limit it ran into, if any. The memory controller
    // counts OOM kills; pids counts refused forks.
    CgroupVerdict verdict() const;
    // Removes the groups (the sandbox must be gone); idempotent.
    void remove();
    bool empty() const { return dirs_.empty(); }
    // What the groups were made with (their memory, pids and cpu limits are what they hold).
    const SandboxLimits& limits() const { return limits_; }

    // Shared with the pids scanner thread until remove().
    struct Events;

  private:
    struct Dir {
        std::string controller, path;
    };
    const Dir* dir(std::string_view controller) const;

    std::vector<Dir> dirs_;
    SandboxLimits limits_;
    bool memsw_ = false;  // swap accounting: memory.memsw.limit_in_bytes exists
    std::shared_ptr<Events> events_;
};

// One sandbox's groups made ahead, so that making them (three mkdirs and four limit writes,
// ~0.1-0.2 ms) is off the next start's path: a backend takes the spare when it starts a
// sandbox and makes the next one once that sandbox has reached execve, while its interpreter
// starts. Only from a backend's second start on: a process that starts one sandbox (`sandflow
// exec`, a backend's probe) would make and remove a spare for nothing. A spare holds no
// process; a runtime that dies leaves it to remove_stale_groups(). Thread-safe.
class CgroupSpare {
  public:
    // The spare if it was made with `limits`' memory, pids and cpu, else new groups
    // (SandboxCgroup::create).
    Result<SandboxCgroup> take(const CgroupSupport& support, const SandboxLimits& limits);
    // Makes a spare with `limits` unless there is one, no controller is usable, or take() has
    // been called only once so far. A failure leaves none: take() then makes the groups, and
    // reports what fails.
    void refill(const CgroupSupport& support, const SandboxLimits& limits);

  private:
    std::mutex m_;
    std::optional<SandboxCgroup> spare_;
    std::uint64_t taken_ = 0;  // take() calls
};

}  // namespace sandflow::sandbox::mech
