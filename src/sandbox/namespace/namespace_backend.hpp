// The namespace backend (docs/sandbox.md): each worker runs in its own user, pid, mount,
// network, ipc, uts and cgroup namespaces, with no capabilities, no_new_privs, Landlock
// (where the kernel has it), a seccomp filter, rlimits and, where writable, its own cgroups. It
// needs no privileges: as root the sandbox's root is host nobody; as an ordinary user it is that
// user.
//
// The mechanisms live one per file in this folder; this orchestrator applies them in a
// fixed order, documented in namespace_backend.cpp and docs/sandbox.md:
//
//   parent   prepare everything (paths, files, BPF, id maps, rlimits, argv, env) and
//            create the sandbox's cgroups with its limits (WorkerSpec::limits, else the
//            backend's, whose plans are built once) → clone(user, pid, mount, net, ipc, uts)
//            → write uid_map/gid_map → move the child into its cgroups → release it
//   init     (PID 1 of the new pid namespace) wait for release → become uid/gid 0 inside
//            → cgroup namespace → mounts and pivot_root → hostname → fork the worker →
//            drop its own capabilities → reap until the worker ends (pid_init.hpp)
//   worker   default signals → setsid → rlimits → chdir → drop capabilities, bounding
//            set included → no_new_privs → Landlock → seccomp → execve
//
// Between clone() and execve() nothing allocates, throws or logs; a failure reaches the
// parent as {step, errno} through a close-on-exec pipe (child_report.hpp).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "sandbox/backend.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandbox/mechanisms/landlock.hpp"
#include "sandbox/mechanisms/rlimits.hpp"
#include "sandbox/mechanisms/seccomp_policy.hpp"
#include "sandbox/namespace/mount_ns.hpp"
#include "sandbox/namespace/pid_init.hpp"
#include "sandbox/namespace/user_ns.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox {

struct NamespaceOptions {
    SandboxLimits limits;
    // Use cgroups where this host lets Sandflow write them (rlimits always apply).
    bool use_cgroups = true;
    // The layers a test may turn off, one at a time, to show that the escape suite then
    // fails (tests/security). Never off in production: no flag or config reaches them.
    struct Layers {
        bool seccomp = true;
        bool drop_capabilities = true;
        bool network_namespace = true;
        bool landlock = true;  // where the kernel has it
    } layers;
};

// The Landlock rules this tier stacks on its mount namespace: the plan's input
// (mech::make_landlock_plan), as data a test can read without a sandbox.
std::vector<mech::LandlockRule> namespace_landlock_rules();

class NamespaceBackend final : public Backend {
  public:
    // Prepares what every sandbox shares (the seccomp program, id maps, cgroup support).
    static Result<std::unique_ptr<NamespaceBackend>> create(NamespaceOptions options = {});

    std::string_view name() const override { return "namespace"; }
    IsolationLevel level() const override { return IsolationLevel::os; }
    SandboxLimits default_limits() const override { return options_.limits; }
    Result<std::unique_ptr<Process>> spawn(const WorkerSpec& spec) override;

    // Starts one sandbox running /usr/bin/true and waits for it; the result is computed
    // once per process. Errc::sandbox_unavailable with how to fix it when it cannot run.
    static Result<void> probe();

    const mech::CgroupSupport& cgroup_support() const { return cgroups_; }
    const NamespaceOptions& options() const { return options_; }
    // The kernel's Landlock ABI version; 0 when Landlock is not available.
    int landlock_abi() const { return landlock_.abi; }

  private:
    explicit NamespaceBackend(NamespaceOptions options) : options_(std::move(options)) {}

    NamespaceOptions options_;
    ns::IdMapping ids_;
    mech::SeccompProgram seccomp_;
    mech::RlimitPlan rlimits_;  // for options_.limits
    mech::LandlockPlan landlock_;
    mech::CgroupSupport cgroups_;
    mech::CgroupSpare spare_cgroup_;  // the next sandbox's groups, made ahead
    bool pids_cgroup_ = false;        // a pids group can be made (rlimits.hpp: effective_nproc)
    ns::MountPlan default_mounts_;    // for options_.limits and the default working directory
    ns::RuntimeImage image_;
    int last_cap_ = 0;
    std::vector<std::string> env_;
};

}  // namespace sandflow::sandbox
