// The landlock backend: isolation for hosts and containers where user namespaces are
// refused (Docker's and Kubernetes' default seccomp profiles, hosts that restrict
// unprivileged user namespaces). No namespace and no mount is needed: each worker is a
// process of the host (or container) walled in by Landlock, seccomp, a uid of its own where
// the runtime may switch ids, no capabilities, rlimits and, where writable, cgroups.
// docs/sandbox.md says per probe what stops it here and what this tier cannot hide that the
// namespace tier does.
//
// The order, applied by this orchestrator (landlock_backend.cpp):
//
//   parent      prepare everything (the sandbox's id, its work folder, the
//               Landlock rules with that folder, rlimits, seccomp, argv, env) and create its
//               cgroups (where writable) → clone
//   supervisor  (supervisor.hpp) descriptors in place → PR_SET_PDEATHSIG(SIGTERM) → every
//               signal blocked → wait for the parent (which moves it into its cgroups) →
//               setsid → hide the runtime's memory → child subreaper → fork the worker →
//               wait for the worker's end or the runtime's word, then sweep
//   worker      default signals → PR_SET_PDEATHSIG(SIGKILL) → setsid → securebits and the
//               bounding set (where permitted) → the sandbox's uid/gid → no capabilities →
//               rlimits → chdir to the work folder → no_new_privs → Landlock → seccomp
//               (with the signal guard naming the supervisor and the runtime) → execve
//
// Between clone() and execve() nothing allocates, throws or logs; a failure reaches the
// parent as {step, errno} through a close-on-exec pipe (mechanisms/child_report.hpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sandbox/backend.hpp"
#include "sandbox/landlock/sandbox_ids.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandbox/mechanisms/landlock.hpp"
#include "sandbox/mechanisms/rlimits.hpp"
#include "sandbox/mechanisms/runtime_image.hpp"
#include "sandbox/mechanisms/seccomp_policy.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox {

struct LandlockOptions {
    SandboxLimits limits;
    // The sandboxes' uids where the runtime may switch ids (sandbox_ids.hpp).
    landlock::IdRange ids;
    // Where the sandboxes' work folders are made; empty: work_root_default().
    std::string work_root;
    // Use cgroups where this host lets Sandflow write them (rlimits always apply).
    bool use_cgroups = true;
    // The layers a test may turn off, one at a time, to show that the escape suite then
    // fails (tests/security). Never off in production: no flag or config reaches them.
    struct Layers {
        bool seccomp = true;
        bool landlock = true;
    } layers;
};

// /tmp/sandflow-work-<euid>.
std::string work_root_default();

// The paths a sandbox of this tier may reach and how, with `work_dir` its own work folder and
// `shared` its package sets (read-only): the plan's input (mech::make_landlock_plan), as data
// a test can read without a sandbox.
std::vector<mech::LandlockRule> landlock_rules(const std::string& work_dir,
                                               const std::vector<SharedDir>& shared = {});

class LandlockBackend final : public Backend {
  public:
    // Errc::sandbox_unavailable when the kernel has no Landlock (this tier's only
    // filesystem wall) or the work root cannot be made.
    static Result<std::unique_ptr<LandlockBackend>> create(LandlockOptions options = {});

    std::string_view name() const override { return "landlock"; }
    IsolationLevel level() const override { return IsolationLevel::process; }
    SandboxLimits default_limits() const override { return options_.limits; }
    // No mounts: the worker reads a shared folder where it lies, through a Landlock rule.
    std::string shared_dir_path(const SharedDir& dir) const override { return dir.host; }
    Result<std::unique_ptr<Process>> spawn(const WorkerSpec& spec) override;

    // Starts one sandbox running /usr/bin/true and waits for it; computed once per process.
    static Result<void> probe();

    int landlock_abi() const { return mech::landlock_abi(); }
    const mech::CgroupSupport& cgroup_support() const { return cgroups_; }
    const landlock::SandboxIds& ids() const { return *ids_; }
    const LandlockOptions& options() const { return options_; }

  private:
    explicit LandlockBackend(LandlockOptions options) : options_(std::move(options)) {}

    LandlockOptions options_;
    std::unique_ptr<landlock::SandboxIds> ids_;
    mech::SeccompProgram seccomp_;
    mech::CgroupSupport cgroups_;
    mech::CgroupSpare spare_cgroup_;  // the next sandbox's groups, made ahead
    bool pids_cgroup_ = false, memory_cgroup_ = false;
    bool holds_setpcap_ = false;
    int last_cap_ = 0;
    mech::RuntimeImage image_;
};

}  // namespace sandflow::sandbox
